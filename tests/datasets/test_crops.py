"""Crop views for self-distillation: RandomPointCrop keeps the nearest
points and records their scene rows, MultiCrop makes groups of views, and
the collated ``index`` matches points of two views through the scene."""
import numpy as np
import pytest
import torch
from mmengine.dataset import Compose

from dbbd.datasets import dbbd_collate
from dbbd.registry import TRANSFORMS


def _scene(n, seed, scene_id='s'):
    """A scene dict whose colour names its points: ``color[:, 0]`` is the
    point's row, so a view's packed colour says which scene point it is."""
    rng = np.random.default_rng(seed)
    coord = (rng.random((n, 3)) * [4.0, 3.0, 2.0]).astype(np.float32)
    color = np.stack([np.arange(n), rng.random(n), rng.random(n)],
                     1).astype(np.float32)
    normal = rng.normal(size=(n, 3)).astype(np.float32)
    return dict(scene_id=scene_id, coord=coord, color=color, normal=normal,
                intensity=None, segment=rng.integers(-1, 5, n),
                seed_key=(0, 0, seed), sample_seed=seed)


def test_point_crop_keeps_the_nearest_points_and_their_scene_rows():
    s = _scene(1000, 0)
    crop = TRANSFORMS.build(dict(type='RandomPointCrop', ratio=(0.2, 0.2)))
    view = dict(coord=s['coord'].copy(), color=s['color'].copy(),
                normal=s['normal'].copy(), intensity=None,
                mask=np.arange(1000) % 3 == 0,
                rng=np.random.default_rng(4))
    out = crop(view)
    index = out['index']
    assert index.dtype == np.int64 and index.shape == (200, )
    assert np.all(np.diff(index) > 0)  # scene order kept
    # every per-point array is the scene's rows at index
    assert np.array_equal(out['coord'], s['coord'][index])
    assert np.array_equal(out['color'], s['color'][index])
    assert np.array_equal(out['mask'], np.arange(1000)[index] % 3 == 0)
    # written out: the 200 points nearest the centre point the same
    # generator draws (after the fraction)
    rng = np.random.default_rng(4)
    rng.uniform(0.2, 0.2)
    centre = s['coord'][rng.integers(1000)]
    d = np.square(s['coord'] - centre).sum(1)
    assert set(index.tolist()) == set(np.argsort(d)[:200].tolist())
    # a crop of a crop still names scene rows
    again = TRANSFORMS.build(dict(type='RandomPointCrop', ratio=0.5))(
        dict(out, rng=np.random.default_rng(5)))
    assert np.array_equal(again['coord'], s['coord'][again['index']])
    assert set(again['index'].tolist()) <= set(index.tolist())
    for bad in ((0.5, 0.2), (0.0, 0.5), 1.5, 'big', True):
        with pytest.raises(ValueError, match='RandomPointCrop: ratio'):
            TRANSFORMS.build(dict(type='RandomPointCrop', ratio=bad))


def _pipeline(feat_keys=('color', ), rotate=True):
    aug = [dict(type='RandomRotateZ')] if rotate else []
    return Compose([TRANSFORMS.build(t) for t in [
        dict(type='MultiCrop', groups=[
            dict(num_views=2, transforms=[
                dict(type='RandomPointCrop', ratio=(0.5, 0.9)), *aug,
                dict(type='RandomPatchMask', ratio=0.4, patch_size=0.5)]),
            dict(num_views=3, transforms=[
                dict(type='RandomPointCrop', ratio=(0.1, 0.3)), *aug]),
        ]),
        dict(type='PackDBBDInputs', feat_keys=feat_keys),
    ]])


def test_collated_views_match_points_through_the_scene():
    """A point in two views has one index, and both views' copies are the
    same scene point: the same name (colour), and the same distances to
    the other shared points (the views are rotated differently)."""
    pipeline = _pipeline()
    scenes = [_scene(500, 1, 'a'), _scene(400, 2, 'b')]
    batch = dbbd_collate([pipeline(dict(s)) for s in scenes])
    inp = batch['inputs']
    assert sorted(k for k in inp if k.startswith('view')) == [
        f'view{v}' for v in range(1, 6)]
    # the batch's scene points, named: row within the scene + offset
    names = torch.cat([torch.arange(500.), torch.arange(400.)])
    offset = inp['offset']
    scene_coord = torch.from_numpy(np.concatenate([s['coord']
                                                   for s in scenes]))
    for v in range(1, 6):
        view = inp[f'view{v}']
        n_v = view['coord'].shape[0]
        assert view['index'].shape == (n_v, ) and view['offset'][-1] == n_v
        # each view point is the scene point its index names
        assert torch.equal(view['feat'][:, 0], names[view['index']])
        # and lies in the scene its view offset says
        scene_of = torch.bucketize(view['index'], offset[1:], right=True)
        counts = torch.bincount(scene_of, minlength=2)
        assert torch.equal(view['offset'].diff(), counts)
        # rotated views: distances to the other points of the same scene
        # are those of the scene points (checked within scene a)
        a = view['index'] < 500
        c, ref = view['coord'][a], scene_coord[view['index'][a]]
        exact = 'donot_use_mm_for_euclid_dist'
        torch.testing.assert_close(
            torch.cdist(c, c, compute_mode=exact),
            torch.cdist(ref, ref, compute_mode=exact), atol=1e-5, rtol=1e-5)
        if v <= 2:  # the global views carry their masks, the local none
            assert view['mask'].shape == (n_v, )
        else:
            assert 'mask' not in view
    sizes = [int(inp[f'view{v}']['offset'][-1]) for v in range(1, 6)]
    assert min(sizes[:2]) > max(sizes[2:])  # global > local crops
    # views 1 and 3 share points: equal index, equal name
    shared = np.intersect1d(inp['view1']['index'], inp['view3']['index'])
    assert shared.size > 0


def test_multicrop_views_are_those_of_multiview_per_view_number():
    """MultiCrop's view v is made exactly as MultiView's view v (the same
    generator of (seed_key, v)), so views do not depend on the grouping."""
    aug = [dict(type='RandomRotateZ'), dict(type='RandomJitter')]
    s = _scene(300, 3)
    multi = TRANSFORMS.build(dict(type='MultiView', num_views=3,
                                  transforms=aug))(dict(s))['views']
    crop = TRANSFORMS.build(dict(type='MultiCrop', groups=[
        dict(num_views=1, transforms=aug),
        dict(num_views=2, transforms=aug)]))(dict(s))['views']
    for a, b in zip(multi, crop):
        assert np.array_equal(a['coord'], b['coord'])
    with pytest.raises(ValueError, match=r'MultiCrop: groups\[1\]'):
        TRANSFORMS.build(dict(type='MultiCrop', groups=[
            dict(num_views=1), dict(num_views=0)]))


def test_pack_refuses_a_view_that_dropped_points_without_index():
    class Drop:
        def __call__(self, r):
            r['coord'] = r['coord'][:10]
            return r
    pipeline = Compose([
        TRANSFORMS.build(dict(type='MultiView', num_views=1,
                              transforms=[Drop()])),
        TRANSFORMS.build(dict(type='PackDBBDInputs', feat_keys=('coord', )))])
    with pytest.raises(ValueError, match='no index'):
        pipeline(_scene(50, 0))
