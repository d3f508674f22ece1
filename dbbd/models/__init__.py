"""DBBD models: every part is registered in ``dbbd.registry.MODELS``.

Layout (as mmpretrain / mmdetection3d): ``backbones/`` (the tree backbone),
``encoders/``, ``propagators/``, ``aggregators/`` (its parts),
``selfsup/`` (pre-training algorithms: backbone + heads + loss),
``segmentors/`` (downstream models), ``heads/``, ``losses/``, ``utils/``.

Importing this package registers them all (the registry imports it on first
use through ``locations=['dbbd.models']``).
"""
from .aggregators import *  # noqa: F401,F403
from .backbones import *  # noqa: F401,F403
from .data_preprocessor import DBBDDataPreprocessor
from .encoders import *  # noqa: F401,F403
from .heads import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .propagators import *  # noqa: F401,F403
from .segmentors import *  # noqa: F401,F403
from .selfsup import *  # noqa: F401,F403

__all__ = [
    'DBBD', 'DBBDTreeBackbone', 'DBBDDataPreprocessor', 'BasePointEncoder',
    'PointNetEncoder', 'TwoStagePointNetEncoder', 'MLPPropagator', 'Aggregator',
    'ProjectionHead', 'InfoNCELoss', 'RegionLoss', 'PointLoss', 'DBBDLoss',
    'PointSegmentor', 'LinearSegHead', 'MLPSegHead'
]
