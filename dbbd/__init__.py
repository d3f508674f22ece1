"""DBBD: dual-branch bi-directional self-supervised pre-training for 3D scenes."""
from .version import __version__
from .utils.safe_yaml import register_safe_yaml

# YAML configs are read without building Python objects (dbbd.utils.safe_yaml)
register_safe_yaml()

__all__ = ['__version__']
