"""Training machinery: hooks, log processor, safe checkpoint loading,
pretrained backbone weights (``pretrained=``) and the exported encoder.

Importing this package makes every local checkpoint load through mmengine
(``Runner.resume``, ``load_from``, ``load_checkpoint``) use
:func:`dbbd.engine.checkpoint.load_checkpoint_safe` (``weights_only=True``
with DBBD's allow-list), and every local file mmengine writes through its
storage backend (checkpoints) atomic
(:class:`dbbd.engine.storage.AtomicLocalBackend`). ``tools/train.py``
imports it, and the registries in :mod:`dbbd.registry` import it lazily
through ``locations``.
"""
from .checkpoint import (CHECKPOINT_FORMAT_VERSION, CheckpointLoadError,
                         CorruptCheckpointError, UnsafeCheckpointError,
                         find_latest_checkpoint, load_checkpoint_safe,
                         safe_globals_list)
from .checkpoint_sources import register_safe_loader
from .storage import AtomicLocalBackend
from .hooks import (NonFiniteLossError, NonFiniteLossHook,
                    NonFiniteWeightsError,
                    ResumableEarlyStoppingHook, SafeCheckpointHook,
                    StrictLoadHook)
from .hooks import CollapseWatchHook, FeatureVisHook
# Registered in LOG_PROCESSORS; configs name it as type='DBBDLogProcessor',
# which only resolves once this package is imported.
from .log_processor import DBBDLogProcessor
from .schedulers import ResumableCosineAnnealingLR
from .state_check import (CheckpointMismatchError, CheckpointVersionError,
                          check_checkpoint, check_state_dict_matches)
# pretrained= (registers PretrainedBackboneInit in WEIGHT_INITIALIZERS) and
# the exported encoder
from .export import export_encoder, load_exported_encoder
from .pretrained import PretrainedLoadError, load_pretrained_backbone

__all__ = [
    'CHECKPOINT_FORMAT_VERSION', 'CheckpointLoadError',
    'CorruptCheckpointError', 'UnsafeCheckpointError',
    'find_latest_checkpoint', 'load_checkpoint_safe', 'register_safe_loader',
    'safe_globals_list', 'SafeCheckpointHook', 'DBBDLogProcessor',
    'ResumableEarlyStoppingHook', 'NonFiniteLossHook', 'NonFiniteLossError',
    'NonFiniteWeightsError',
    'StrictLoadHook', 'CheckpointMismatchError', 'CheckpointVersionError',
    'check_checkpoint', 'check_state_dict_matches'
]
__all__ += ['CollapseWatchHook', 'FeatureVisHook', 'AtomicLocalBackend',
            'ResumableCosineAnnealingLR']
__all__ += ['export_encoder', 'load_exported_encoder', 'PretrainedLoadError',
            'load_pretrained_backbone']

# Every address mmengine loads a checkpoint from goes through the safe
# loader from here on (dbbd.engine.checkpoint_sources).
register_safe_loader()
