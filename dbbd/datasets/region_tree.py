"""Region trees: the offline spatial split of a scene (method section 1).

A region is split into up to ``branching`` children by farthest-point
sampling (FPS) of centres among its points and a nearest-centre (Voronoi)
assignment, so the children partition the parent exactly. Every level of
every region is computed at once: the only Python loops are over levels and
over the ``branching`` FPS steps, never over regions or points.

A tree is stored as flat arrays (see :class:`RegionTree`), never as a nested
Python object, so it saves as plain ``.npy`` files and batches with one
offset per level.
"""
from dataclasses import dataclass

import numpy as np

__all__ = ['RegionTree', 'build_region_tree', 'truncate_tree', 'check_tree']


@dataclass
class RegionTree:
    """A scene's region tree as flat arrays.

    Attributes:
        point_region (L, N) int32: region id of each point at level ``l``
            (ids are local to the level, ``0 .. R_l - 1``), ``-1`` below the
            point's leaf.
        region_parent (R,) int32: for all regions of all levels, level after
            level, the parent's id in the previous level (``-1`` at level 0).
        region_center (R,) int32: index of each region's centre point.
        level_offset (L + 1,) int64: regions of level ``l`` are
            ``[level_offset[l], level_offset[l + 1])`` of the two arrays
            above.
    """
    point_region: np.ndarray
    region_parent: np.ndarray
    region_center: np.ndarray
    level_offset: np.ndarray

    @property
    def num_levels(self):
        return int(self.point_region.shape[0])

    @property
    def regions_per_level(self):
        return np.diff(self.level_offset).astype(np.int64)

    def level(self, l):
        """``(parent (R_l,), center (R_l,))`` of level ``l``."""
        a, b = self.level_offset[l], self.level_offset[l + 1]
        return self.region_parent[a:b], self.region_center[a:b]


def _segment_first_argmax(values, seg, num_seg):
    """Index of the first maximum of ``values`` within each segment.

    ``seg`` must be sorted (points grouped by segment).
    """
    starts = np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])
    seg_max = np.full(num_seg, -np.inf)
    seg_max[seg[starts]] = np.maximum.reduceat(values, starts)
    cand = np.flatnonzero(values == seg_max[seg])
    first = np.r_[True, seg[cand[1:]] != seg[cand[:-1]]]
    out = np.full(num_seg, -1, dtype=np.int64)
    out[seg[cand[first]]] = cand[first]
    return out


def _split_level(xyz, seg, num_seg, splittable, branching, rng):
    """Split every splittable segment of one level in one pass.

    Args:
        xyz (M, 3) float64: points of the level, grouped by segment.
        seg (M,) int64: sorted segment id of each point.
        num_seg: number of segments.
        splittable (num_seg,) bool: which segments to split.
        branching: number of FPS centres per segment.
        rng: numpy Generator (the FPS start of each segment).

    Returns:
        child (M,) int64: child slot ``0 .. branching - 1`` of each point
        (``-1`` in segments that are not split); centres (num_seg, branching)
        int64: point index of each slot's centre (``-1`` for unused slots).
    """
    m = xyz.shape[0]
    counts = np.bincount(seg, minlength=num_seg)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    k = branching
    centres = np.full((num_seg, k), -1, dtype=np.int64)
    active = splittable & (counts > 0)
    if not active.any():
        return np.full(m, -1, dtype=np.int64), centres
    # FPS start: a seeded random point of each segment.
    first = starts + np.floor(rng.random(num_seg) * counts).astype(np.int64)
    first = np.minimum(first, starts + np.maximum(counts - 1, 0))
    centres[active, 0] = first[active]
    mind = np.full(m, np.inf)
    pt_active = active[seg]
    for j in range(1, k):
        c = centres[seg, j - 1]
        ok = pt_active & (c >= 0)
        d = np.einsum('ij,ij->i', xyz - xyz[np.maximum(c, 0)],
                      xyz - xyz[np.maximum(c, 0)])
        mind = np.where(ok, np.minimum(mind, d), mind)
        vals = np.where(pt_active, mind, -1.0)
        pick = _segment_first_argmax(vals, seg, num_seg)
        # a segment with fewer than j + 1 distinct points gets no new centre
        has = active & (pick >= 0)
        has[has] = vals[pick[has]] > 0
        centres[has, j] = pick[has]
    # nearest-centre assignment against the segment's own centres
    c = centres[seg]  # (M, k)
    valid = c >= 0
    diff = xyz[:, None, :] - xyz[np.maximum(c, 0)]
    d = np.einsum('ijk,ijk->ij', diff, diff)
    d[~valid] = np.inf
    child = np.argmin(d, axis=1)
    child[~pt_active] = -1
    return child, centres


def build_region_tree(coord, branching=8, max_depth=4, min_points_to_split=64,
                      seed=0):
    """Build the region tree of a scene.

    Args:
        coord (N, 3): point coordinates.
        branching: children per split (FPS centres), method default 8.
        max_depth: deepest level (levels ``0 .. max_depth``), default 4.
        min_points_to_split: a region with fewer points is a leaf.
        seed: the tree is a deterministic function of ``(coord, seed)``.

    Returns:
        (tree, order): ``tree`` is a :class:`RegionTree` over the points
        *reordered* by ``order (N,)``: points of every region are contiguous
        at every level (depth-first order), which keeps the per-level segment
        reductions of the model cache-friendly. Apply ``order`` to every
        per-point array of the scene.
    """
    xyz = np.asarray(coord, dtype=np.float64)
    n = xyz.shape[0]
    if xyz.ndim != 2 or xyz.shape[1] != 3 or n == 0:
        raise ValueError(f'coord must be (N, 3) with N > 0, got {xyz.shape}')
    if branching < 2:
        raise ValueError(f'branching must be >= 2, got {branching}')
    if max_depth < 0:
        raise ValueError(f'max_depth must be >= 0, got {max_depth}')
    rng = np.random.default_rng(seed)
    xyz = xyz - xyz.mean(0)

    # Level 0: the root; its centre is the point nearest the centroid.
    order = np.arange(n)
    seg = np.zeros(n, dtype=np.int64)  # region id at the current level
    levels_seg = [seg.copy()]           # per level, region of each point
    parents = [np.array([-1], dtype=np.int64)]
    centers = [np.array([np.argmin((xyz ** 2).sum(1))], dtype=np.int64)]
    alive = np.ones(n, dtype=bool)      # point still in a splittable region

    for _ in range(max_depth):
        num_seg = len(parents[-1])
        idx = np.flatnonzero(alive)
        if idx.size == 0:
            break
        s = seg[idx]
        counts = np.bincount(s, minlength=num_seg)
        splittable = counts >= max(min_points_to_split, 2)
        pts = splittable[s]
        idx, s = idx[pts], s[pts]
        if idx.size == 0:
            break
        # points of the level are grouped by region (depth-first order)
        srt = np.argsort(s, kind='stable')
        idx, s = idx[srt], s[srt]
        child, cen = _split_level(xyz[idx], s, num_seg, splittable,
                                  branching, rng)
        # child ids: (parent, slot) pairs that received points, in order
        key = s * branching + child
        uniq, new_id = np.unique(key, return_inverse=True)
        par = uniq // branching
        slot = uniq % branching
        cen_pt = idx[cen[par, slot]]
        new_seg = np.full(n, -1, dtype=np.int64)
        new_seg[idx] = new_id
        alive = new_seg >= 0
        seg = new_seg
        levels_seg.append(new_seg)
        parents.append(par.astype(np.int64))
        centers.append(cen_pt.astype(np.int64))

    point_region = np.stack(levels_seg)  # (L, N)
    # Depth-first order: sort points by their path (region id per level,
    # ids already ordered by parent), with -1 (above leaf) first.
    keys = [point_region[l] for l in range(point_region.shape[0] - 1, -1, -1)]
    order = np.lexsort(keys)
    inv = np.empty(n, dtype=np.int64)
    inv[order] = np.arange(n)
    point_region = point_region[:, order]
    region_center = inv[np.concatenate(centers)]
    level_offset = np.concatenate(
        [[0], np.cumsum([len(p) for p in parents])]).astype(np.int64)
    tree = RegionTree(
        point_region=point_region.astype(np.int32),
        region_parent=np.concatenate(parents).astype(np.int32),
        region_center=region_center.astype(np.int32),
        level_offset=level_offset)
    return tree, order


def truncate_tree(tree, max_depth):
    """Drop levels below ``max_depth``; regions of that level become leaves."""
    if max_depth is None or max_depth + 1 >= tree.num_levels:
        return tree
    if max_depth < 0:
        raise ValueError(f'max_depth must be >= 0, got {max_depth}')
    L = max_depth + 1
    end = tree.level_offset[L]
    return RegionTree(
        point_region=tree.point_region[:L],
        region_parent=tree.region_parent[:end],
        region_center=tree.region_center[:end],
        level_offset=tree.level_offset[:L + 1])


def check_tree(tree, num_points, name='tree'):
    """Raise ``ValueError`` naming ``name`` when the tree is inconsistent.

    Checks shapes, id ranges and that each level refines the previous one
    (a point's region at level ``l`` has its region at ``l - 1`` as parent).
    Vectorised: one pass per level.
    """
    pr = tree.point_region
    lo = np.asarray(tree.level_offset)
    if pr.ndim != 2 or pr.shape[1] != num_points:
        raise ValueError(f'{name}: point_region has shape {pr.shape}, '
                         f'expected (levels, {num_points})')
    if lo.ndim != 1 or lo.shape[0] != pr.shape[0] + 1 or lo[0] != 0 \
            or np.any(np.diff(lo) < 0):
        raise ValueError(f'{name}: level_offset {lo.tolist()} does not match '
                         f'{pr.shape[0]} levels')
    r = int(lo[-1])
    if tree.region_parent.shape != (r,) or tree.region_center.shape != (r,):
        raise ValueError(
            f'{name}: region_parent {tree.region_parent.shape} and '
            f'region_center {tree.region_center.shape} must both be ({r},)')
    if r and (tree.region_center.min() < 0
              or tree.region_center.max() >= num_points):
        raise ValueError(f'{name}: region_center index out of range '
                         f'[0, {num_points})')
    if pr.shape[0] and (lo[1] != 1 or np.any(pr[0] != 0)):
        raise ValueError(f'{name}: level 0 must be one root region holding '
                         'every point')
    for l in range(1, pr.shape[0]):
        n_l, n_p = lo[l + 1] - lo[l], lo[l] - lo[l - 1]
        ids = pr[l]
        if ids.size and (ids.max() >= n_l or ids.min() < -1):
            raise ValueError(f'{name}: level {l} region id out of range '
                             f'[-1, {n_l})')
        par = tree.region_parent[lo[l]:lo[l + 1]]
        if par.size and (par.min() < 0 or par.max() >= n_p):
            raise ValueError(f'{name}: level {l} parent id out of range '
                             f'[0, {n_p})')
        has = ids >= 0
        if np.any(pr[l - 1][has] < 0) or np.any(
                par[ids[has]] != pr[l - 1][has]):
            raise ValueError(f'{name}: level {l} does not refine level '
                             f'{l - 1} (a point sits in a region whose '
                             'parent is not its region one level up)')
