"""Sparse voxel tensors: features on the occupied cells of a batch of grids.

A :class:`SparseTensor` is ``feat (N, C)`` on the voxels of a
:class:`VoxelSet` (``coords (N, 4)``: batch index, then x, y, z in grid units
of its level). Every convolution of a level maps a tensor on one voxel set to
a tensor on the same set (submanifold) or on the next coarser / finer set
(strided / inverse), so what a convolution needs to know about the voxels (its
kernel map) depends on the set only: it is built once, cached on the set, and
reused by every convolution of that level.

Voxel keys: one int64 per voxel, the batch index in the top 15 bits and each
coordinate, shifted by :data:`KEY_MARGIN`, in 16 bits. The shift keeps every
neighbour a kernel of size up to ``2 * KEY_MARGIN + 1`` can reach inside its
field, so the key of ``coords + d`` is ``key + pack(d)`` exactly: a
neighbour lookup is an addition and a ``searchsorted`` in the sorted keys.
"""
import itertools

import torch

__all__ = [
    'SparseTensor', 'VoxelSet', 'pack_keys', 'unpack_keys', 'pack_offsets',
    'MAX_COORD', 'MAX_BATCH', 'KEY_MARGIN'
]

COORD_BITS = 16
BATCH_BITS = 15
KEY_MARGIN = 8
#: Largest grid coordinate a voxel key holds (65,519: 1.3 km at 2 cm).
MAX_COORD = (1 << COORD_BITS) - 1 - 2 * KEY_MARGIN
#: Largest batch index a voxel key holds.
MAX_BATCH = (1 << BATCH_BITS) - 1
_SHIFTS = (3 * COORD_BITS, 2 * COORD_BITS, COORD_BITS, 0)
_MASK = (1 << COORD_BITS) - 1


def pack_keys(coords):
    """``coords (N, 4)`` long (batch, x, y, z) -> keys ``(N,)`` int64,
    ordered like the rows sorted by batch, then x, y, z."""
    c = coords.long()
    return ((c[:, 0] << _SHIFTS[0])
            | ((c[:, 1] + KEY_MARGIN) << _SHIFTS[1])
            | ((c[:, 2] + KEY_MARGIN) << _SHIFTS[2])
            | (c[:, 3] + KEY_MARGIN))


def unpack_keys(keys):
    """Inverse of :func:`pack_keys`: keys ``(N,)`` -> coords ``(N, 4)``."""
    return torch.stack([
        keys >> _SHIFTS[0],
        ((keys >> _SHIFTS[1]) & _MASK) - KEY_MARGIN,
        ((keys >> _SHIFTS[2]) & _MASK) - KEY_MARGIN,
        (keys & _MASK) - KEY_MARGIN], 1)


def kernel_offsets(kernel_size, centred, device=None):
    """The ``K^3`` offsets of a kernel, ``(K^3, 3)`` long, offset ``k`` being
    ``(a, b, c)`` with ``k = (a * K + b) * K + c`` (the order of the kernel
    axes of a weight ``(C_out, K, K, K, C_in)``), shifted by ``-(K // 2)``
    when ``centred`` (submanifold kernels)."""
    r = kernel_size // 2 if centred else 0
    grid = itertools.product(range(kernel_size), repeat=3)
    return torch.tensor([[a - r, b - r, c - r] for a, b, c in grid],
                        dtype=torch.long, device=device)


def pack_offsets(offsets):
    """Offsets ``(K, 3)`` -> key deltas ``(K,)``: ``pack(c + d) ==
    pack(c) + delta(d)`` while every field stays in range."""
    return ((offsets[:, 0] << _SHIFTS[1]) + (offsets[:, 1] << _SHIFTS[2])
            + offsets[:, 2])


class VoxelSet:
    """The occupied voxels of a batch at one level, and what is cached on
    them.

    Args:
        coords (N, 4): long, (batch, x, y, z), unique rows, each coordinate in
            ``[0, MAX_COORD]``, batch in ``[0, MAX_BATCH]``.
        batch_size: B (at least ``coords[:, 0].max() + 1``).
        keys (N,): optional, ``pack_keys(coords)`` when already known.
        check: validate ranges and uniqueness (skipped for sets the
            convolutions build, which are valid by construction).

    Attributes:
        cache (dict): kernel maps (torch backend) and index pairs (spconv
            backend) of this set, keyed by the convolution's geometry.
        parent: set by a strided convolution on the coarse set it creates:
            ``(fine VoxelSet, kernel_size, stride)``; inverse convolutions map
            back to it. ``None`` for the finest set.
    """

    def __init__(self, coords, batch_size, keys=None, check=True):
        coords = coords.long()
        if coords.dim() != 2 or coords.shape[1] != 4:
            raise ValueError(f'coords must be (N, 4) (batch, x, y, z), got '
                             f'shape {tuple(coords.shape)}')
        self.coords = coords
        self.batch_size = int(batch_size)
        self.cache = {}
        self.parent = None
        self._keys = keys
        self._sorted = None
        if check and coords.shape[0]:
            lo = coords.min(0).values.tolist()
            hi = coords.max(0).values.tolist()
            if min(lo) < 0 or max(hi[1:]) > MAX_COORD:
                raise ValueError(
                    f'voxel coordinates span {lo[1:]}..{hi[1:]}; they must '
                    f'lie in [0, {MAX_COORD}]: use a larger voxel_size or '
                    f'crop the scene')
            if hi[0] >= self.batch_size or hi[0] > MAX_BATCH:
                raise ValueError(
                    f'batch index {hi[0]} must be < batch_size '
                    f'{self.batch_size} and <= {MAX_BATCH}')
            sorted_keys, _ = self.sorted_keys()
            if (sorted_keys[1:] == sorted_keys[:-1]).any():
                raise ValueError('coords has duplicate voxels: give one row '
                                 'per occupied cell')

    def __len__(self):
        return self.coords.shape[0]

    @property
    def device(self):
        return self.coords.device

    @property
    def keys(self):
        """``(N,)`` int64 keys of the voxels, in row order."""
        if self._keys is None:
            self._keys = pack_keys(self.coords)
        return self._keys

    def sorted_keys(self):
        """``(sorted keys, order)``; order is ``None`` when the rows are
        already sorted (sets built here always are)."""
        if self._sorted is None:
            keys = self.keys
            if keys.numel() < 2 or bool((keys[1:] > keys[:-1]).all()):
                self._sorted = (keys, None)
            else:
                sorted_keys, order = torch.sort(keys)
                self._sorted = (sorted_keys, order)
        return self._sorted


class SparseTensor:
    """Features on the voxels of a :class:`VoxelSet`.

    Args:
        feat (N, C): one row per voxel.
        coords (N, 4): long (batch, x, y, z); or pass ``voxels``.
        batch_size: B; default ``coords[:, 0].max() + 1``.
        voxels: an existing :class:`VoxelSet` to share (and its caches).
    """

    def __init__(self, feat, coords=None, batch_size=None, voxels=None):
        if voxels is None:
            if coords is None:
                raise ValueError('SparseTensor needs coords or voxels')
            if batch_size is None:
                batch_size = int(coords[:, 0].max()) + 1 if len(coords) else 0
            voxels = VoxelSet(coords, batch_size)
        if feat.dim() != 2 or feat.shape[0] != len(voxels):
            raise ValueError(f'feat must be (N, C) with N = {len(voxels)} '
                             f'voxels, got shape {tuple(feat.shape)}')
        self.feat = feat
        self.voxels = voxels

    @property
    def coords(self):
        return self.voxels.coords

    @property
    def batch_size(self):
        return self.voxels.batch_size

    def replace_feat(self, feat):
        """A tensor with new ``feat (N, C')`` on the same voxels."""
        return SparseTensor(feat, voxels=self.voxels)

    def __repr__(self):
        return (f'SparseTensor(voxels={len(self.voxels)}, '
                f'channels={self.feat.shape[1]}, '
                f'batch_size={self.batch_size})')
