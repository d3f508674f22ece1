"""Downstream segmentation models (a backbone and a segmentation head)."""
from .point_segmentor import PointSegmentor
from .pretrained import PretrainedLoadError, load_pretrained_backbone

__all__ = ['PointSegmentor', 'PretrainedLoadError',
           'load_pretrained_backbone']
