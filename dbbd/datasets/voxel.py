"""Grid (voxel) subsampling: one point per occupied voxel."""
import numpy as np

__all__ = ['voxel_subsample']


def voxel_subsample(coord, voxel_size):
    """Indices of the points to keep, one per occupied voxel.

    The kept point of a voxel is the one nearest the voxel centre (ties: the
    lowest index), so the result is a deterministic function of the input
    and independent of point order; keeping real points (not averages) keeps
    colours, normals and labels valid: index every per-point array with the
    result.

    Args:
        coord (N, 3): positions in metres (centred in float64 here, so far
            from the origin works).
        voxel_size: edge length in metres (> 0).

    Returns:
        keep (M,) int64: sorted indices into the N points.
    """
    if not voxel_size or voxel_size <= 0:
        raise ValueError(f'voxel_size must be > 0, got {voxel_size}')
    xyz = np.asarray(coord, dtype=np.float64)
    n = xyz.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    rel = (xyz - xyz.min(0)) / voxel_size
    grid = np.floor(rel).astype(np.int64)
    dims = grid.max(0) + 1
    # one int64 key per voxel; dims come from real extents, so the product
    # only overflows for absurd voxel sizes, which we refuse
    if float(dims[0]) * float(dims[1]) * float(dims[2]) >= 2 ** 62:
        raise ValueError(f'voxel_size {voxel_size} is too small for a scene '
                         f'of {xyz.max(0) - xyz.min(0)} metres')
    key = (grid[:, 0] * dims[1] + grid[:, 1]) * dims[2] + grid[:, 2]
    dist = ((rel - grid - 0.5) ** 2).sum(1)
    order = np.lexsort((np.arange(n), dist, key))
    k = key[order]
    first = np.r_[True, k[1:] != k[:-1]]
    return np.sort(order[first])
