"""Datasets, transforms, samplers and collation (``DATASETS``,
``TRANSFORMS``, ``DATA_SAMPLERS``, ``FUNCTIONS``)."""
from .collate import dbbd_collate
from .dbbd_dataset import DataPreparationError, DBBDDataset
from .formatting import (MultiCrop, MultiView, OnViews, PackDBBDInputs,
                         feature_channels)
from .region_tree import (RegionTree, build_region_tree, check_tree,
                          truncate_tree)
from .samplers import EpochSeedSampler
from .seg_dataset import SegDataset, SegLabelError
from .transforms import *  # noqa: F401,F403

__all__ = [
    'dbbd_collate', 'DBBDDataset', 'DataPreparationError', 'MultiView',
    'OnViews', 'MultiCrop', 'PackDBBDInputs', 'feature_channels', 'RegionTree',
    'build_region_tree', 'check_tree', 'truncate_tree', 'EpochSeedSampler',
    'SegDataset', 'SegLabelError'
]
