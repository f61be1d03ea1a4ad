"""The sample application's Django project package."""

from sampleapp.celery import app as celery_app

__all__ = ("celery_app",)
