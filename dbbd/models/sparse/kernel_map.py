"""Kernel maps of the ``torch`` backend, built with tensor operations.

A kernel map lists, per kernel offset ``k``, the pairs ``(in_idx, out_idx)``
of input and output voxels that offset connects: the convolution is then, per
offset, one gather of the input rows, one matrix product with ``W[k]`` and
one ``index_add_`` into the output rows (:mod:`.functional`).
"""
import itertools
from dataclasses import dataclass
from typing import List, Tuple

import torch

from .tensor import (VoxelSet, kernel_offsets, pack_keys, pack_offsets,
                     unpack_keys)

__all__ = ['KernelMap', 'submanifold_map', 'downsample_map', 'parent_index']


@dataclass
class KernelMap:
    """Input/output voxel pairs of every kernel offset.

    Attributes:
        in_idx (M,), out_idx (M,): long; the pairs of offset ``k`` are the
            slice ``[start, end)`` of both.
        bounds: ``(k, start, end)`` of each offset with at least one pair.
        identity: offset whose pairs are ``(i, i)`` for every voxel (the
            centre of a submanifold kernel), kept out of ``in_idx`` and
            computed without a gather; ``-1`` when there is none.
        num_in, num_out: voxels of the input and output sets.
        volume: number of kernel offsets (``K^3``).
    """
    in_idx: torch.Tensor
    out_idx: torch.Tensor
    bounds: List[Tuple[int, int, int]]
    identity: int
    num_in: int
    num_out: int
    volume: int

    def transposed(self):
        """The map of the transposed convolution (output and input
        swapped, same offsets)."""
        return KernelMap(self.out_idx, self.in_idx, self.bounds,
                         self.identity, self.num_out, self.num_in,
                         self.volume)


def _bounds(offsets, counts):
    ends = itertools.accumulate(counts)
    return [(k, e - n, e) for k, n, e in zip(offsets, counts, ends) if n]


def submanifold_map(voxels: VoxelSet, kernel_size: int) -> KernelMap:
    """The map of a submanifold convolution (output set = input set,
    centred odd kernel), cached on ``voxels``.

    Offset ``d`` and ``-d`` connect the same pairs with the roles swapped,
    so only the offsets before the centre are searched, and the centre is
    the identity. Keys are sorted by (batch, x, y, z), so the neighbours of
    voxel ``(x, y, z)`` in the column ``(x + dx, y + dy)`` are the keys in
    ``[key(x + dx, y + dy, z - K//2), key(x + dx, y + dy, z + K//2)]``: two
    ``searchsorted`` per column ``(dx, dy)`` find all ``K`` offsets ``dz``
    of that column, and the work after them is proportional to the pairs
    found, not to ``K^3 * N``.
    """
    key = ('subm', kernel_size)
    kmap = voxels.cache.get(key)
    if kmap is not None:
        return kmap
    if kernel_size % 2 != 1:
        raise ValueError(f'a submanifold kernel must be odd, got '
                         f'kernel_size={kernel_size}')
    r = kernel_size // 2
    volume = kernel_size ** 3
    centre = volume // 2
    n = len(voxels)
    device = voxels.device
    if volume == 1:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        kmap = KernelMap(empty, empty, [], 0, n, n, 1)
        voxels.cache[key] = kmap
        return kmap
    sorted_keys, order = voxels.sorted_keys()
    # columns (dx, dy) up to (0, 0), in the kernel's order: offset
    # k = column * K + (dz + r); the offsets before the centre are those of
    # the columns before (0, 0), and dz < 0 in (0, 0)
    num_cols = kernel_size * kernel_size // 2 + 1
    cols = kernel_offsets(kernel_size, centred=True, device=device)[
        ::kernel_size][:num_cols]
    cols[:, 2] = 0
    # (C, N): key of (b, x + dx, y + dy, z) for every column and voxel
    base = voxels.keys.unsqueeze(0) + pack_offsets(cols).unsqueeze(1)
    top = torch.full((num_cols, 1), r, dtype=torch.long, device=device)
    top[-1] = -1
    # the keys in [base - r, base + dz_max] are the neighbours in that
    # column (z is the lowest field of a key)
    lo = torch.searchsorted(sorted_keys, base - r)
    count = (torch.searchsorted(sorted_keys, base + top, right=True)
             - lo).view(-1)
    start = count.cumsum(0) - count
    # one entry per neighbour: (column, voxel) repeated count times
    group = torch.repeat_interleave(count)
    cand = lo.view(-1)[group] + (torch.arange(group.numel(), device=device)
                                 - start[group])
    out_half = group % n
    k = (group // n) * kernel_size + r + \
        (sorted_keys[cand] - base.view(-1)[group])
    in_half = cand if order is None else order[cand]
    # group the pairs by offset (a stable sort keeps voxel order inside)
    k, perm = torch.sort(k, stable=True)
    in_half, out_half = in_half[perm], out_half[perm]
    counts = torch.bincount(k, minlength=centre).tolist()
    half = in_half.numel()
    # offset volume-1-k is -d_k: its pairs are those of k, reversed
    first_half = _bounds(range(centre), counts)
    mirror = [(volume - 1 - j, half + s, half + e)
              for j, s, e in first_half]
    kmap = KernelMap(torch.cat([in_half, out_half]),
                     torch.cat([out_half, in_half]), first_half + mirror,
                     centre, n, n, volume)
    voxels.cache[key] = kmap
    return kmap


def downsample_map(voxels: VoxelSet, kernel_size: int, stride: int):
    """The coarse voxel set of a strided convolution with
    ``kernel_size == stride`` and its kernel map.

    Each fine voxel ``c`` feeds exactly one coarse voxel ``c // stride``
    through offset ``c % stride``. The coarse set is sorted by key; its
    ``parent`` is ``(voxels, kernel_size, stride)`` and the transposed map
    is cached on it for the inverse convolution.

    Returns:
        (coarse VoxelSet, KernelMap from ``voxels`` to it).
    """
    if kernel_size != stride:
        raise ValueError(f'the torch backend supports strided convolutions '
                         f'with kernel_size == stride (as SpUNet uses), got '
                         f'kernel_size={kernel_size}, stride={stride}')
    coords = voxels.coords
    grid = coords[:, 1:]
    coarse = torch.cat([coords[:, :1], torch.div(grid, stride,
                                                 rounding_mode='floor')], 1)
    rem = grid - coarse[:, 1:] * stride
    offset = (rem[:, 0] * stride + rem[:, 1]) * stride + rem[:, 2]
    ckeys, parent = torch.unique(pack_keys(coarse), sorted=True,
                                 return_inverse=True)
    coarse_set = VoxelSet(unpack_keys(ckeys), voxels.batch_size, keys=ckeys,
                          check=False)
    volume = stride ** 3
    order = torch.argsort(offset, stable=True)
    counts = torch.bincount(offset, minlength=volume).tolist()
    kmap = KernelMap(order, parent[order], _bounds(range(volume), counts),
                     -1, len(voxels), len(coarse_set), volume)
    coarse_set.parent = (voxels, kernel_size, stride)
    coarse_set.cache[('up', kernel_size, stride)] = kmap.transposed()
    return coarse_set, kmap


def parent_index(fine: VoxelSet, coarse: VoxelSet, stride: int):
    """For every voxel of ``fine``, its row in ``coarse``, the set a strided
    convolution (``kernel_size == stride``) made from it: fine voxel ``c``
    lies in coarse voxel ``c // stride``.

    Works on the sets of either backend (a coarse set that is not sorted by
    key is looked up through its sort order).

    Returns:
        (N_fine,) long, rows of ``coarse``.
    """
    c = fine.coords
    keys = pack_keys(torch.cat([c[:, :1], torch.div(
        c[:, 1:], stride, rounding_mode='floor')], 1))
    sorted_keys, order = coarse.sorted_keys()
    pos = torch.searchsorted(sorted_keys, keys)
    return pos if order is None else order.index_select(0, pos)
