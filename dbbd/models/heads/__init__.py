"""Projection and prototype heads (pre-training) and segmentation heads
(downstream)."""
from .projection_head import ProjectionHead
from .prototype_head import PrototypeHead
from .seg_head import LinearSegHead, MLPSegHead

__all__ = ['ProjectionHead', 'PrototypeHead', 'LinearSegHead', 'MLPSegHead']
