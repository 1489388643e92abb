"""Soak: churn against real servers; fds, tasks and RSS must come back (tests/soak/_soak.py)."""
