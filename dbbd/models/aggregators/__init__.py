"""L2G aggregators: children region features -> parent region feature."""
from .aggregator import Aggregator

__all__ = ['Aggregator']
