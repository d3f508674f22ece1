"""Index tensors of a collated batch's region trees, built once per batch.

Both branches read the same tree (the views differ only in coordinates and
features), so everything that depends on the tree alone -- which points are
in a level, each row's parent, which regions are leaves, where each point's
leaf-level row lands -- is derived here once and the branches only index
with it.

:func:`build_tree_index` does it with numpy, on the host: the collate
function calls it in the data-loader workers, so the model receives ready
index tensors and its training step needs no host synchronisation to find
out sizes (``nonzero``, ``all()``, ``equal`` on the device each wait for
the device). Every size a branch needs (regions, rows and leaves per level)
is a Python ``int`` here.

Terms (see ``docs/data_format.md``): ``P`` points, ``L`` levels, ``R_l``
regions in level ``l`` (global ids over the batch). The *rows* of level ``l``
are the points that have a region there (``point_region[l] >= 0``), ``A_l``
of them, in point order.
"""
from dataclasses import dataclass, fields, replace
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .segment_plan import segment_plan, with_plan

__all__ = ['LevelIndex', 'TreeIndex', 'build_tree_index', 'index_tree',
           'tree_index_of']


def _map(value, fn):
    if torch.is_tensor(value):
        return fn(value)
    if isinstance(value, LevelIndex):
        return _map_tensors(value, fn)
    if isinstance(value, list):
        return [_map(v, fn) for v in value]
    return value


def _map_tensors(obj, fn):
    """``obj`` (a dataclass below) with ``fn`` applied to every tensor."""
    return replace(obj, **{f.name: _map(getattr(obj, f.name), fn)
                           for f in fields(obj)})


@dataclass
class LevelIndex:
    """One level of the batch's trees.

    Attributes:
        num_regions: R_l.
        region (A_l,) long: region of each row.
        rows (A_l,) long or None: point index of each row; None when every
            point has a region at this level (then ``A_l = P``, row = point).
        parent (R_l,) long: parent region in level ``l - 1`` (-1 at level 0).
        center (R_l,) long: point index of each region's centre.
        row_parent (A_l,) long or None: ``parent[region]``; None at level 0.
        leaf_rows (K,) long or None: positions (into the ``A_l`` rows) of
            rows whose region is a leaf; None when all are.
        leaf_ids (K_l,) long: the leaf regions of the level, increasing.
        num_rows: A_l.
        num_leaves: K_l.
        region_lengths (R_l,) long or None: rows per region, when the rows
            are sorted by region (points stored depth-first) and every
            region has rows; then ``region_plan`` is the staged reduction
            plan of :func:`~dbbd.structures.segment_plan.segment_plan`.
        region_plan: list of long tensors, or None.
    """
    num_regions: int
    region: Tensor
    rows: Optional[Tensor]
    parent: Tensor
    center: Tensor
    row_parent: Optional[Tensor]
    leaf_rows: Optional[Tensor]
    leaf_ids: Tensor
    num_rows: int
    num_leaves: int
    region_lengths: Optional[Tensor] = None
    region_plan: Optional[List[Tensor]] = None

    def region_index(self) -> Tensor:
        """``region`` carrying its reduction plan (when there is one), for
        the segment reductions."""
        return with_plan(self.region, self.region_plan, self.region_lengths)


@dataclass
class TreeIndex:
    """All levels, plus the two point-to-leaf maps of the branches.

    Attributes:
        levels: one :class:`LevelIndex` per level.
        num_points: P.
        point_order (P,) long or None: G2L gathers, level by level, the rows
            of leaf regions into one ``(P, D)`` tensor;
            ``cat[point_order]`` puts them back in point order (None when
            already in order).
        leaf_region (P,) long: each point's leaf, numbered over all levels
            in the order of their points when every leaf's points are
            contiguous (points stored depth-first: then ``leaf_region`` is
            sorted), else level after level by region id.
        leaf_center (K,) long: centre point of each leaf.
        leaf_offset: list of ``L + 1`` ints: level ``l`` has
            ``leaf_offset[l + 1] - leaf_offset[l]`` leaves.
        leaf_pos: list over levels of ``(K_l,)`` long: the leaf numbers of
            level ``l``'s leaves, in the order of their region ids.
        leaf_lengths, leaf_plan: as :class:`LevelIndex`'s, for
            ``leaf_region``.

    ``to(device)`` and ``pin_memory()`` move every tensor, so the data
    preprocessor and a pinned-memory loader treat it like any tensor.
    """
    levels: List[LevelIndex]
    num_points: int
    point_order: Optional[Tensor]
    leaf_region: Tensor
    leaf_center: Tensor
    leaf_offset: List[int]
    leaf_pos: List[Tensor]
    leaf_lengths: Optional[Tensor] = None
    leaf_plan: Optional[List[Tensor]] = None

    def leaf_index(self) -> Tensor:
        """``leaf_region`` carrying its reduction plan (if any)."""
        return with_plan(self.leaf_region, self.leaf_plan, self.leaf_lengths)

    @property
    def num_levels(self):
        return len(self.levels)

    @property
    def num_leaves(self):
        return self.leaf_offset[-1]

    @property
    def regions_per_level(self):
        return [lv.num_regions for lv in self.levels]

    @property
    def device(self):
        return self.leaf_region.device

    def to(self, device, non_blocking: bool = False) -> 'TreeIndex':
        return _map_tensors(
            self, lambda t: t.to(device, non_blocking=non_blocking))

    def pin_memory(self) -> 'TreeIndex':
        return _map_tensors(self, lambda t: t.pin_memory())


def _long(a) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))


def _plan(index: np.ndarray, num_segments: int):
    """(lengths, plan) tensors when ``index`` is sorted and every segment
    has a row; (None, None) otherwise."""
    if index.size == 0 or num_segments == 0 or np.any(index[1:] < index[:-1]):
        return None, None
    lengths = np.bincount(index, minlength=num_segments)
    if lengths.min() < 1:
        return None, None
    return _long(lengths), [_long(s) for s in segment_plan(lengths)]


def _np(a) -> np.ndarray:
    if torch.is_tensor(a):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=np.int64)


def build_tree_index(point_region, region_parent: Sequence,
                     region_center: Sequence) -> TreeIndex:
    """Derive the :class:`TreeIndex` of a collated batch, on the host.

    Args:
        point_region (L, P) int: global region id per level, -1 below leaf.
        region_parent: L arrays ``(R_l,)``, parent id in level l - 1.
        region_center: L arrays ``(R_l,)``, centre point index.

    Numpy or torch (CPU) inputs; CPU tensors out. Loops over levels only.
    """
    point_region = _np(point_region)
    if point_region.ndim != 2:
        raise ValueError('point_region must be (L, P), got shape '
                         f'{point_region.shape}')
    num_levels, num_points = point_region.shape
    if num_levels == 0 or len(region_parent) != num_levels \
            or len(region_center) != num_levels:
        raise ValueError(
            f'point_region has {num_levels} levels but region_parent has '
            f'{len(region_parent)} and region_center {len(region_center)} '
            '(all must match and be >= 1)')
    parents = [_np(p) for p in region_parent]
    centers = [_np(c) for c in region_center]
    levels = []
    leaf_rank = []        # per level: (R_l,) leaf number of each region
    leaf_offset = [0]
    src_rows = []         # per level: point index of the leaf rows
    for l in range(num_levels):
        parent, center = parents[l], centers[l]
        r = parent.shape[0]
        is_leaf = np.ones(r, dtype=bool)
        if l + 1 < num_levels and parents[l + 1].size:
            is_leaf[parents[l + 1]] = False
        pr = point_region[l]
        active = pr >= 0
        if active.all():
            rows, region = None, pr
        else:
            rows = np.flatnonzero(active)
            region = pr[rows]
        leaf_row_mask = is_leaf[region]
        leaf_rows = None if leaf_row_mask.all() else np.flatnonzero(
            leaf_row_mask)
        leaf_ids = np.flatnonzero(is_leaf)
        lengths, plan = _plan(region, int(r))
        levels.append(LevelIndex(
            num_regions=int(r), region=_long(region),
            rows=None if rows is None else _long(rows),
            parent=_long(parent), center=_long(center),
            row_parent=_long(parent[region]) if l > 0 else None,
            leaf_rows=None if leaf_rows is None else _long(leaf_rows),
            leaf_ids=_long(leaf_ids), num_rows=int(region.shape[0]),
            num_leaves=int(leaf_ids.shape[0]), region_lengths=lengths,
            region_plan=plan))

        point_of_row = rows if rows is not None else np.arange(num_points)
        src_rows.append(point_of_row if leaf_rows is None else
                        point_of_row[leaf_rows])
        leaf_rank.append(np.cumsum(is_leaf) - 1 + leaf_offset[-1])
        leaf_offset.append(leaf_offset[-1] + int(leaf_ids.shape[0]))

    src_rows = np.concatenate(src_rows)
    if src_rows.shape[0] != num_points:
        raise ValueError(f'the trees give {src_rows.shape[0]} leaf rows for '
                         f'{num_points} points: every point must sit in '
                         'exactly one leaf')
    identity = np.arange(num_points)
    if np.array_equal(src_rows, identity):
        point_order = None
    else:
        point_order = np.empty_like(src_rows)
        point_order[src_rows] = identity

    # A point's leaf is its region at its deepest level (levels with a
    # region form a prefix, so depth = number of levels with one - 1).
    depth = (point_region >= 0).sum(0) - 1
    local = point_region[depth, identity]
    level_start = np.cumsum([0] + [lv.num_regions for lv in levels])
    leaf_region = np.concatenate(leaf_rank)[level_start[depth] + local]
    leaf_center = np.concatenate(
        [centers[l][levels[l].leaf_ids.numpy()] for l in range(num_levels)])
    # Number the leaves in the order of their points when each leaf's
    # points are one run (depth-first storage): leaf_region is then sorted
    # and pools without atomics on a GPU.
    num_leaves = leaf_offset[-1]
    starts = np.flatnonzero(np.r_[True, leaf_region[1:] != leaf_region[:-1]])
    remap = np.arange(num_leaves)
    if starts.shape[0] == num_leaves:
        remap[leaf_region[starts]] = np.arange(num_leaves)
    leaf_region = remap[leaf_region]
    center = np.empty_like(leaf_center)
    center[remap] = leaf_center
    lengths, plan = _plan(leaf_region, num_leaves)
    return TreeIndex(levels=levels, num_points=int(num_points),
                     point_order=None if point_order is None else
                     _long(point_order), leaf_region=_long(leaf_region),
                     leaf_center=_long(center), leaf_offset=leaf_offset,
                     leaf_pos=[_long(remap[a:b]) for a, b in
                               zip(leaf_offset[:-1], leaf_offset[1:])],
                     leaf_lengths=lengths, leaf_plan=plan)


@torch.no_grad()
def index_tree(point_region, region_parent, region_center) -> TreeIndex:
    """:func:`build_tree_index` of tensors on any device, moved back there.

    For batches assembled by hand; :func:`dbbd.datasets.dbbd_collate`
    already puts the index in ``inputs['tree']``.
    """
    device = point_region.device
    return build_tree_index(point_region, region_parent,
                            region_center).to(device)


def tree_index_of(inputs: dict) -> TreeIndex:
    """The batch's :class:`TreeIndex`: ``inputs['tree']`` (built by the
    collate function), else derived from the tree arrays."""
    tree = inputs.get('tree')
    if tree is not None:
        return tree
    return index_tree(inputs['point_region'], inputs['region_parent'],
                      inputs['region_center'])
