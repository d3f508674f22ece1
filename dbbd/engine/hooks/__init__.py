"""Hooks (``HOOKS``)."""
from .checkpoint_hook import SafeCheckpointHook, to_plain
from .class_weight_hook import ClassWeightHook, add_class_weight_hook
from .collapse_hook import CollapseWatchHook
from .early_stopping_hook import ResumableEarlyStoppingHook
from .feature_vis_hook import FeatureVisHook
from .precise_bn_hook import PreciseBNHook
from .nonfinite_loss_hook import (NonFiniteLossError, NonFiniteLossHook,
                                  NonFiniteWeightsError)
from .seg_results_hook import SegResultsHook
from .strict_load_hook import StrictLoadHook

__all__ = [
    'SafeCheckpointHook', 'to_plain', 'ResumableEarlyStoppingHook',
    'NonFiniteLossError', 'NonFiniteLossHook', 'NonFiniteWeightsError',
    'StrictLoadHook'
]
__all__ += ['PreciseBNHook', 'CollapseWatchHook', 'FeatureVisHook', 'SegResultsHook']
__all__ += ['ClassWeightHook', 'add_class_weight_hook']
