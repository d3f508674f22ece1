"""Index tensors of a collated batch's region trees, computed once per batch.

Both branches read the same tree (the views differ only in coordinates and
features), so everything that depends on the tree alone -- which points are
in a level, each row's parent, which regions are leaves, where each point's
leaf-level row lands -- is derived here once, without gradients, and the
branches only index with it.

Terms (see ``docs/data_format.md``): ``P`` points, ``L`` levels, ``R_l``
regions in level ``l`` (global ids over the batch). The *rows* of level ``l``
are the points that have a region there (``point_region[l] >= 0``), ``A_l``
of them, in point order.
"""
from dataclasses import dataclass
from typing import List, Optional

import torch
from torch import Tensor

__all__ = ['LevelIndex', 'TreeIndex', 'index_tree']


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
        is_leaf (R_l,) bool: no region of level ``l + 1`` names it parent.
        row_parent (A_l,) long or None: ``parent[region]``; None at level 0.
        leaf_rows (K,) long or None: positions (into the ``A_l`` rows) of
            rows whose region is a leaf; None when all are.
        leaf_ids (K_l,) long: the leaf regions of the level, increasing.
    """
    num_regions: int
    region: Tensor
    rows: Optional[Tensor]
    parent: Tensor
    center: Tensor
    is_leaf: Tensor
    row_parent: Optional[Tensor]
    leaf_rows: Optional[Tensor]
    leaf_ids: Tensor


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
        leaf_region (P,) long: each point's leaf, numbered over all levels:
            level after level, by region id (the leaves of level ``l`` are
            ``[leaf_offset[l], leaf_offset[l + 1])``).
        leaf_center (K,) long: centre point of each leaf.
        leaf_offset: list of ``L + 1`` ints.
    """
    levels: List[LevelIndex]
    num_points: int
    point_order: Optional[Tensor]
    leaf_region: Tensor
    leaf_center: Tensor
    leaf_offset: List[int]

    @property
    def num_levels(self):
        return len(self.levels)

    @property
    def num_leaves(self):
        return self.leaf_offset[-1]

    @property
    def regions_per_level(self):
        return [lv.num_regions for lv in self.levels]


def _nonzero(mask):
    return mask.nonzero().squeeze(1)


@torch.no_grad()
def index_tree(point_region, region_parent, region_center):
    """Derive the :class:`TreeIndex` of a collated batch.

    Args:
        point_region (L, P) long: global region id per level, -1 below leaf.
        region_parent: L tensors ``(R_l,)`` long, parent id in level l - 1.
        region_center: L tensors ``(R_l,)`` long, centre point index.

    Loops over levels only.
    """
    point_region = point_region.long()
    num_levels, num_points = point_region.shape
    if num_levels == 0 or len(region_parent) != num_levels \
            or len(region_center) != num_levels:
        raise ValueError(
            f'point_region has {num_levels} levels but region_parent has '
            f'{len(region_parent)} and region_center {len(region_center)} '
            '(all must match and be >= 1)')
    device = point_region.device
    levels = []
    leaf_rank = []        # per level: (R_l,) leaf number of each leaf region
    leaf_offset = [0]
    src_rows = []         # per level: point index of the leaf rows
    for l in range(num_levels):
        parent = region_parent[l].long()
        center = region_center[l].long()
        r = parent.numel()
        is_leaf = torch.ones(r, dtype=torch.bool, device=device)
        if l + 1 < num_levels and region_parent[l + 1].numel():
            is_leaf[region_parent[l + 1].long()] = False
        pr = point_region[l]
        active = pr >= 0
        if bool(active.all()):
            rows, region = None, pr
        else:
            rows = _nonzero(active)
            region = pr.index_select(0, rows)
        leaf_row_mask = is_leaf[region]
        leaf_rows = None if bool(leaf_row_mask.all()) else _nonzero(
            leaf_row_mask)
        leaf_ids = _nonzero(is_leaf)
        levels.append(LevelIndex(
            num_regions=r, region=region, rows=rows, parent=parent,
            center=center, is_leaf=is_leaf,
            row_parent=parent[region] if l > 0 else None,
            leaf_rows=leaf_rows, leaf_ids=leaf_ids))

        point_of_row = rows if rows is not None else torch.arange(
            num_points, device=device)
        src_rows.append(point_of_row if leaf_rows is None else
                        point_of_row.index_select(0, leaf_rows))
        rank = torch.cumsum(is_leaf, 0) - 1 + leaf_offset[-1]
        leaf_rank.append(rank)
        leaf_offset.append(leaf_offset[-1] + leaf_ids.numel())

    src_rows = torch.cat(src_rows)
    if src_rows.numel() != num_points:
        raise ValueError(f'the trees give {src_rows.numel()} leaf rows for '
                         f'{num_points} points: every point must sit in '
                         'exactly one leaf')
    identity = torch.arange(num_points, device=device)
    if torch.equal(src_rows, identity):
        point_order = None
    else:
        point_order = torch.empty_like(src_rows)
        point_order[src_rows] = identity

    # A point's leaf is its region at its deepest level (levels with a
    # region form a prefix, so depth = number of levels with one - 1).
    depth = (point_region >= 0).sum(0) - 1
    local = point_region.gather(0, depth.unsqueeze(0)).squeeze(0)
    level_start = torch.tensor(
        [0] + [lv.num_regions for lv in levels], device=device).cumsum(0)
    leaf_region = torch.cat(leaf_rank)[level_start[depth] + local]
    leaf_center = torch.cat([lv.center[lv.leaf_ids] for lv in levels])
    return TreeIndex(levels=levels, num_points=num_points,
                     point_order=point_order, leaf_region=leaf_region,
                     leaf_center=leaf_center, leaf_offset=leaf_offset)
