"""Point encoders: region points -> per-point and per-region features."""
from .base import BasePointEncoder
from .pointnet import PointNetEncoder
from .two_stage_pointnet import TwoStagePointNetEncoder

__all__ = ['BasePointEncoder', 'PointNetEncoder', 'TwoStagePointNetEncoder']
