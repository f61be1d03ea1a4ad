"""Customers, orders and order lines."""
