"""Downstream segmentation models (a backbone and a segmentation head)."""
from .point_segmentor import PointSegmentor

# Loading pretrained= weights is the engine's
# (dbbd.engine.pretrained: load_pretrained_backbone, PretrainedLoadError).
__all__ = ['PointSegmentor']
