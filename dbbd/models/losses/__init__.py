"""Contrastive and self-distillation losses (pre-training) and segmentation
loss terms."""
from .dbbd_loss import DBBDLoss
from .distill_loss import PrototypeDistillLoss, sinkhorn_knopp
from .info_nce import InfoNCELoss
from .point_loss import PointLoss
from .region_loss import RegionLoss
from .seg_losses import (LovaszSoftmaxLoss, SegCrossEntropyLoss,
                         auto_class_weight, lovasz_softmax)

__all__ = ['InfoNCELoss', 'RegionLoss', 'PointLoss', 'DBBDLoss',
           'SegCrossEntropyLoss', 'LovaszSoftmaxLoss', 'lovasz_softmax',
           'auto_class_weight', 'PrototypeDistillLoss', 'sinkhorn_knopp']
