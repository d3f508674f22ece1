"""Collation of scenes into one flat batch (see ``docs/data_format.md``)."""
import re

import numpy as np
import torch

from dbbd.registry import FUNCTIONS
from dbbd.structures.sample_order import point_sample_order
from dbbd.structures.tree_index import build_tree_index

__all__ = ['dbbd_collate']

_VIEW = re.compile(r'view[0-9]+')


def _cat(arrays, dtype):
    return torch.from_numpy(np.ascontiguousarray(
        np.concatenate(arrays, axis=0), dtype=dtype))


@FUNCTIONS.register_module()
def dbbd_collate(samples):
    """Concatenate samples of :class:`DBBDDataset` into one batch.

    Points of all scenes are concatenated (``offset (B + 1,)``). Region ids
    of each level are shifted so that every level of the batch is one flat id
    space: scene ``b``'s regions of level ``l`` become
    ``[region_offset[l, b], region_offset[l, b + 1])``. Centre indices are
    shifted by the scene's point offset. Scenes shallower than the deepest
    one simply have no regions in the deeper levels.

    Everything the model derives from the tree alone is built here too, on
    the host (in the loader workers): ``inputs['tree']``, the
    :class:`~dbbd.structures.TreeIndex` both branches index with, and
    ``inputs['sample_order']``, the seeded permutation of the batch's
    points whose head the point loss samples. The training step then needs
    no host synchronisation to learn sizes.

    Samples without tree arrays (after ``GridSample``) give a batch
    without tree entries, plus ``inverse (P_full,)`` (each original point's
    row among the batch's ``P`` points), ``origin_offset (B + 1,)`` and
    ``origin_segment (P_full,)``. Every ``view<k>`` of the samples becomes
    ``inputs['view<k>']`` (test-time augmentation packs four): ``coord
    (P_v, 3)``, ``feat (P_v, C)``, ``offset (B + 1,)``, ``mask (P_v,)``
    where a sample has one. A view holds the batch's ``P`` points
    (``P_v = P``, ``offset`` the batch's) unless a crop recorded
    ``index``; then the view has its own ``offset`` and ``index (P_v,)``,
    each view point's row among the batch's ``P`` scene points (the
    crops' scene rows shifted by the scene offsets; ``arange`` for a
    sample whose view is not cropped), which is how points of two views
    are matched.

    Only a loop over scenes and levels (to compute offsets); the per-point
    work is array arithmetic.

    Returns:
        dict(inputs=dict(...), data_samples=[dict(scene_id, num_points)])
    """
    if len(samples) == 0:
        raise ValueError('dbbd_collate: got an empty list of samples')
    n_pts = np.array([s['num_points'] for s in samples], dtype=np.int64)
    offset = np.concatenate([[0], np.cumsum(n_pts)])
    with_tree = ['point_region' in s for s in samples]
    if any(with_tree) and not all(with_tree):
        raise ValueError('dbbd_collate: some samples have a region tree and '
                         'some not (GridSample drops it); use one pipeline '
                         'for a whole loader')
    sample_seed = [int(s['sample_seed']) for s in samples]
    inputs = dict(
        offset=torch.from_numpy(offset),
        num_points=[int(n) for n in n_pts],
        segment=_cat([s['segment'] for s in samples], np.int64),
        sample_seed=torch.tensor(sample_seed, dtype=torch.long),
        sample_order=torch.from_numpy(
            point_sample_order(sample_seed, int(offset[-1]))),
    )
    if all(with_tree):
        inputs.update(_collate_trees(samples, offset))
    if all('inverse' in s for s in samples):
        n_full = np.array([s['inverse'].shape[0] for s in samples], np.int64)
        inputs['origin_offset'] = torch.from_numpy(
            np.concatenate([[0], np.cumsum(n_full)]))
        inputs['inverse'] = _cat(
            [s['inverse'] + offset[b] for b, s in enumerate(samples)],
            np.int64)
        inputs['origin_segment'] = _cat(
            [s['origin_segment'] for s in samples], np.int64)
    views = sorted((k for k in samples[0] if _VIEW.fullmatch(k)),
                   key=lambda k: int(k[4:]))
    for view in views:
        inputs[view] = dict(
            coord=_cat([s[view]['coord'] for s in samples], np.float32),
            feat=_cat([s[view]['feat'] for s in samples], np.float32),
            offset=inputs['offset'])
        if any('index' in s[view] for s in samples):
            inputs[view].update(_view_index(samples, view, offset))
        if any('mask' in s[view] for s in samples):
            inputs[view]['mask'] = _cat([
                s[view].get('mask', np.zeros(len(s[view]['coord']), bool))
                for s in samples], np.bool_)
    data_samples = [
        dict(scene_id=s['scene_id'], num_points=int(s['num_points']))
        for s in samples
    ]
    return dict(inputs=inputs, data_samples=data_samples)


def _view_index(samples, view, offset):
    """``offset (B + 1,)`` and ``index (P_v,)`` of a cropped view (see
    :func:`dbbd_collate`)."""
    index = [s[view].get('index') for s in samples]
    index = [np.arange(s['num_points'], dtype=np.int64) if i is None else
             np.asarray(i, np.int64) for s, i in zip(samples, index)]
    sizes = np.array([i.shape[0] for i in index], dtype=np.int64)
    return dict(
        offset=torch.from_numpy(np.concatenate([[0], np.cumsum(sizes)])),
        index=_cat([i + offset[b] for b, i in enumerate(index)], np.int64))


def _collate_trees(samples, offset):
    """The tree entries of the batch (see :func:`dbbd_collate`)."""
    num_levels = max(s['point_region'].shape[0] for s in samples)
    # regions per (scene, level); 0 where a scene is shallower
    counts = np.zeros((len(samples), num_levels), dtype=np.int64)
    for b, s in enumerate(samples):
        rpl = np.diff(s['level_offset'])
        counts[b, :len(rpl)] = rpl
    region_offset = np.concatenate(
        [np.zeros((1, num_levels), np.int64), np.cumsum(counts, 0)]).T

    point_region = np.full((num_levels, offset[-1]), -1, dtype=np.int64)
    parents = [[] for _ in range(num_levels)]
    centers = [[] for _ in range(num_levels)]
    for b, s in enumerate(samples):
        pr = np.asarray(s['point_region'], dtype=np.int64)
        lo = s['level_offset']
        for l in range(pr.shape[0]):
            ids = pr[l]
            point_region[l, offset[b]:offset[b + 1]] = np.where(
                ids >= 0, ids + region_offset[l, b], -1)
            par = np.asarray(s['region_parent'][lo[l]:lo[l + 1]], np.int64)
            parents[l].append(par + region_offset[l - 1, b] if l else par)
            centers[l].append(
                np.asarray(s['region_center'][lo[l]:lo[l + 1]], np.int64)
                + offset[b])

    parents = [np.concatenate(c) if c else np.zeros(0, np.int64)
               for c in parents]
    centers = [np.concatenate(c) if c else np.zeros(0, np.int64)
               for c in centers]
    return dict(
        point_region=torch.from_numpy(point_region),
        region_parent=[torch.from_numpy(p) for p in parents],
        region_center=[torch.from_numpy(c) for c in centers],
        region_offset=torch.from_numpy(np.ascontiguousarray(region_offset)),
        tree=build_tree_index(point_region, parents, centers),
    )
