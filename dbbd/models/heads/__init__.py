"""Projection heads (pre-training) and segmentation heads (downstream)."""
from .projection_head import ProjectionHead
from .seg_head import LinearSegHead, MLPSegHead

__all__ = ['ProjectionHead', 'LinearSegHead', 'MLPSegHead']
