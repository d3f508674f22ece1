"""Metrics (the ``METRICS`` registry), collapse measures
(:mod:`.collapse`) and feature pictures (:mod:`.feature_vis`)."""
from .metrics import *  # noqa: F401,F403
