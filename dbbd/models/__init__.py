"""DBBD models: every part is registered in ``dbbd.registry.MODELS``.

Importing this package registers them all (the registry imports it on first
use through ``locations=['dbbd.models']``).
"""
from .aggregators import *  # noqa: F401,F403
from .algorithms import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .data_preprocessor import DBBDDataPreprocessor
from .encoders import *  # noqa: F401,F403
from .export import export_encoder, load_exported_encoder  # noqa: F401
from .heads import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .propagators import *  # noqa: F401,F403

__all__ = [
    'DBBD', 'DBBDDataPreprocessor', 'BasePointEncoder', 'PointNetEncoder',
    'TwoStagePointNetEncoder', 'MLPPropagator', 'Aggregator',
    'ProjectionHead', 'InfoNCELoss', 'RegionLoss', 'PointLoss', 'DBBDLoss'
]
