"""The audit/event log: who did what, when, from where."""
