"""Algorithms: the pre-training models."""
from .dbbd import DBBD

__all__ = ['DBBD']
