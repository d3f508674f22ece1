"""Data structures that both the data pipeline and the models use.

The collate function (:mod:`dbbd.datasets.collate`) builds them on the host,
in the loader workers; the models only index with them, so a training step
needs no host synchronisation to learn sizes:

- :mod:`.tree_index`: :class:`TreeIndex` / :class:`LevelIndex`, the index
  tensors of a batch's region trees;
- :mod:`.segment_plan`: the staged reduction plans of sorted segments the
  tree index carries;
- :mod:`.sample_order`: the seeded order in which the point losses sample a
  batch's points.

This package imports nothing else from DBBD.
"""
from .sample_order import batch_sample_order, point_sample_order
from .segment_plan import PLAN_CHUNK, segment_plan, with_plan
from .tree_index import (LevelIndex, TreeIndex, build_tree_index, index_tree,
                         tree_index_of)

__all__ = [
    'batch_sample_order', 'point_sample_order', 'PLAN_CHUNK', 'segment_plan',
    'with_plan', 'LevelIndex', 'TreeIndex', 'build_tree_index', 'index_tree',
    'tree_index_of'
]
