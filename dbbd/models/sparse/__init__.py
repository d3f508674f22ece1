"""Sparse 3D convolutions on voxels, with a pure-PyTorch and a spconv
backend sharing the same parameters (see :mod:`.conv`)."""
from .conv import (BACKENDS, SparseConv3d, SparseInverseConv3d, SparseModule,
                   SparseSequential, SubMConv3d, resolve_backend, set_backend)
from .functional import sparse_conv, weight_matrices
from .kernel_map import (KernelMap, downsample_map, parent_index,
                         submanifold_map)
from .spconv_backend import spconv_available
from .tensor import SparseTensor, VoxelSet
from .voxelize import voxelize

__all__ = [
    'BACKENDS', 'SparseConv3d', 'SparseInverseConv3d', 'SparseModule',
    'SparseSequential', 'SubMConv3d', 'resolve_backend', 'set_backend',
    'sparse_conv', 'weight_matrices', 'KernelMap', 'downsample_map',
    'submanifold_map', 'parent_index', 'spconv_available', 'SparseTensor',
    'VoxelSet',
    'voxelize'
]
