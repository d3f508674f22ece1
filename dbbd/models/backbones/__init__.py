"""Scene backbones: a batch of points -> per-point features."""
from .spunet import SpUNet

__all__ = ['SpUNet']
