"""DBBD: dual-branch bi-directional self-supervised pre-training for 3D scenes."""
from .version import __version__

__all__ = ['__version__']
