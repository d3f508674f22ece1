"""Points of a batch of scenes -> one voxel per occupied cell, and back."""
import torch

from ..utils.segment import segment_mean
from .tensor import (MAX_BATCH, MAX_COORD, SparseTensor, VoxelSet,
                     pack_keys, unpack_keys)

__all__ = ['voxelize']


def voxelize(coord, feat, offset, voxel_size):
    """Voxelise every scene of a batch at once (tensor operations only).

    Grid coordinates are ``floor(coord / voxel_size)``, shifted per scene
    by the scene's minimum so they start at 0 (as Pointcept's grid
    sampling); the batch index comes from ``offset``, so two scenes never
    share a voxel. A voxel's feature is the mean of its points' features.

    Args:
        coord (P, 3): point positions (metres).
        feat (P, C): point features.
        offset (B + 1,): long, ``offset[0] = 0``, scene ``b`` holds points
            ``[offset[b], offset[b + 1])``.
        voxel_size: cell edge (metres, > 0).

    Returns:
        voxels: :class:`SparseTensor` ``(V, C)``, voxels sorted by (batch,
            x, y, z).
        point_to_voxel (P,): long, the voxel row of each point; ``voxel
            feat[point_to_voxel]`` carries voxel features back to points.
    """
    if not voxel_size or voxel_size <= 0:
        raise ValueError(f'voxel_size must be > 0, got {voxel_size}')
    num_points = coord.shape[0]
    if coord.dim() != 2 or coord.shape[1] != 3 or feat.shape[0] != \
            num_points:
        raise ValueError(f'coord must be (P, 3) and feat (P, C), got '
                         f'{tuple(coord.shape)} and {tuple(feat.shape)}')
    offset = offset.to(device=coord.device, dtype=torch.long)
    counts = torch.diff(offset)
    if offset.dim() != 1 or offset.numel() < 2 or int(offset[0]) != 0 \
            or int(offset[-1]) != num_points or bool((counts < 0).any()):
        raise ValueError(f'offset must be (B + 1,) non-decreasing from 0 to '
                         f'P = {num_points}, got {offset.tolist()[:8]}')
    batch_size = offset.numel() - 1
    if batch_size - 1 > MAX_BATCH:
        raise ValueError(f'at most {MAX_BATCH + 1} scenes per batch, got '
                         f'{batch_size}')
    batch = torch.repeat_interleave(
        torch.arange(batch_size, device=coord.device), counts,
        output_size=num_points)
    # float64: a float32 coordinate of tens of metres keeps its cell
    grid = torch.floor(coord.double() / voxel_size).long()
    low = grid.new_zeros(batch_size, 3).scatter_reduce_(
        0, batch.unsqueeze(1).expand(-1, 3), grid, 'amin',
        include_self=False)
    grid = grid - low.index_select(0, batch)
    if num_points and int(grid.max()) > MAX_COORD:
        raise ValueError(f'a scene spans {int(grid.max()) + 1} voxels of '
                         f'{voxel_size} along an axis, more than '
                         f'{MAX_COORD + 1}: use a larger voxel_size or crop '
                         f'the scene')
    keys = pack_keys(torch.cat([batch.unsqueeze(1), grid], 1))
    vkeys, point_to_voxel = torch.unique(keys, sorted=True,
                                         return_inverse=True)
    vfeat = segment_mean(feat, point_to_voxel, vkeys.numel())
    voxels = VoxelSet(unpack_keys(vkeys), batch_size, keys=vkeys,
                      check=False)
    return SparseTensor(vfeat, voxels=voxels), point_to_voxel
