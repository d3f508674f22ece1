"""Projection heads."""
from .projection_head import ProjectionHead

__all__ = ['ProjectionHead']
