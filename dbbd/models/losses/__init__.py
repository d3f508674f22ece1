"""Contrastive losses."""
from .dbbd_loss import DBBDLoss
from .info_nce import InfoNCELoss
from .point_loss import PointLoss
from .region_loss import RegionLoss

__all__ = ['InfoNCELoss', 'RegionLoss', 'PointLoss', 'DBBDLoss']
