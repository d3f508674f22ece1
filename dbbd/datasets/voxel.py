"""Grid (voxel) subsampling: one point per occupied voxel."""
import numpy as np

__all__ = ['voxel_subsample', 'voxel_grid']


def voxel_grid(coord, voxel_size, rng=None):
    """One point per occupied voxel, and the voxel of every point.

    The kept point of a voxel is the one nearest the voxel centre (ties: the
    lowest index), a deterministic function of the input independent of
    point order; with ``rng`` (a ``numpy.random.Generator``) it is a random
    point of the voxel instead (training-time grid sampling). Keeping real
    points (not averages) keeps colours, normals and labels valid: index
    every per-point array with ``keep``.

    Args:
        coord (N, 3): positions in metres (centred in float64 here, so far
            from the origin works).
        voxel_size: edge length in metres (> 0).
        rng: None (deterministic) or a generator (random point per voxel).

    Returns:
        keep (M,) int64: sorted indices into the N points;
        inverse (N,) int64: for every point, the position in ``keep`` of
        its voxel's kept point (``keep[inverse]`` maps the N points onto
        the M kept ones).
    """
    if not voxel_size or voxel_size <= 0:
        raise ValueError(f'voxel_size must be > 0, got {voxel_size}')
    xyz = np.asarray(coord, dtype=np.float64)
    n = xyz.shape[0]
    if n == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    rel = (xyz - xyz.min(0)) / voxel_size
    grid = np.floor(rel).astype(np.int64)
    dims = grid.max(0) + 1
    # one int64 key per voxel; dims come from real extents, so the product
    # only overflows for absurd voxel sizes, which we refuse
    if float(dims[0]) * float(dims[1]) * float(dims[2]) >= 2 ** 62:
        raise ValueError(f'voxel_size {voxel_size} is too small for a scene '
                         f'of {xyz.max(0) - xyz.min(0)} metres')
    key = (grid[:, 0] * dims[1] + grid[:, 1]) * dims[2] + grid[:, 2]
    rank = ((rel - grid - 0.5) ** 2).sum(1) if rng is None else \
        rng.random(n)
    order = np.lexsort((np.arange(n), rank, key))
    k = key[order]
    first = np.r_[True, k[1:] != k[:-1]]
    keep = np.sort(order[first])
    # voxel number of every point (in key order), then its kept point's
    # position in the sorted ``keep``
    voxel_of_sorted = np.cumsum(first) - 1
    kept_pos = np.empty(keep.size, np.int64)
    kept_pos[voxel_of_sorted[first]] = np.searchsorted(keep, order[first])
    inverse = np.empty(n, np.int64)
    inverse[order] = kept_pos[voxel_of_sorted]
    return keep, inverse


def voxel_subsample(coord, voxel_size):
    """Indices of the points to keep, one per occupied voxel (the one
    nearest the voxel centre): ``keep`` of :func:`voxel_grid`.

    Returns:
        keep (M,) int64: sorted indices into the N points.
    """
    return voxel_grid(coord, voxel_size)[0]
