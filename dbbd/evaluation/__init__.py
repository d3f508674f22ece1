"""Metrics (the ``METRICS`` registry)."""
from .metrics import *  # noqa: F401,F403
