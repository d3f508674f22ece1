"""Building blocks shared by the model's parts."""
from .mlp import MLP, linear_cat
from .segment import (segment_count, segment_max, segment_mean,
                      segment_softmax, segment_sum)
# The tree index is a structure the collate function builds too; it lives
# in dbbd.structures and stays importable from here.
from dbbd.structures.tree_index import (LevelIndex, TreeIndex,
                                        build_tree_index, index_tree,
                                        tree_index_of)

__all__ = [
    'MLP', 'linear_cat', 'segment_count', 'segment_max', 'segment_mean',
    'segment_softmax', 'segment_sum', 'LevelIndex', 'TreeIndex',
    'build_tree_index', 'index_tree', 'tree_index_of'
]
