import numpy as np
import pytest

from dbbd.registry import TRANSFORMS


def _scene(n=200, seed=0):
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(n, 3)).astype(np.float32)
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return dict(
        coord=(rng.random((n, 3)) * 4).astype(np.float32),
        normal=normal,
        color=(rng.random((n, 3)) * 255).astype(np.float32))


def _run(cfg, results, seed=0):
    t = TRANSFORMS.build(cfg)
    results = dict(results, rng=np.random.default_rng(seed))
    return t(results)


@pytest.mark.parametrize('cfg', [
    dict(type='RandomRotateZ'),
    dict(type='RandomScale', scale=(0.5, 2.0)),
    dict(type='RandomScale', scale=(0.5, 2.0), anisotropic=True),
    dict(type='RandomFlip', p=1.0),
    dict(type='RandomJitter'),
    dict(type='RandomTranslate'),
    dict(type='CenterShift'),
])
def test_geometric_transforms_change_coords_keep_shapes(cfg):
    s = _scene()
    out = _run(cfg, {k: v.copy() for k, v in s.items()})
    assert out['coord'].shape == s['coord'].shape
    assert out['coord'].dtype == np.float32
    assert not np.allclose(out['coord'], s['coord'])
    # normals stay unit vectors
    np.testing.assert_allclose(
        np.linalg.norm(out['normal'], axis=1), 1.0, atol=1e-5)


def test_rotation_rotates_normals_with_points():
    s = _scene()
    out = _run(dict(type='RandomRotateZ'), {k: v.copy() for k, v in s.items()})
    # the rotation is rigid: pairwise distances and normal-to-offset angles
    d0 = np.linalg.norm(s['coord'][1:] - s['coord'][:1], axis=1)
    d1 = np.linalg.norm(out['coord'][1:] - out['coord'][:1], axis=1)
    np.testing.assert_allclose(d0, d1, rtol=1e-4)
    a0 = ((s['coord'][1:] - s['coord'][:1]) * s['normal'][1:]).sum(1)
    a1 = ((out['coord'][1:] - out['coord'][:1]) * out['normal'][1:]).sum(1)
    np.testing.assert_allclose(a0, a1, atol=1e-4)
    np.testing.assert_allclose(out['normal'][:, 2], s['normal'][:, 2],
                               atol=1e-6)


def test_anisotropic_scale_keeps_normals_perpendicular():
    # points on the plane x + y = 1, normal (1, 1, 0)/sqrt(2)
    t = np.linspace(0, 1, 50, dtype=np.float32)
    coord = np.stack([t, 1 - t, t * 0.3], 1)
    normal = np.tile(np.array([[1, 1, 0]], np.float32) / np.sqrt(2), (50, 1))
    out = _run(dict(type='RandomScale', scale=(0.3, 3.0), anisotropic=True),
               dict(coord=coord.copy(), normal=normal.copy(), color=None), 3)
    tangent = out['coord'][-1] - out['coord'][0]
    assert abs(float(tangent @ out['normal'][0])) < 1e-4 * np.linalg.norm(
        tangent)


def test_color_transforms_and_normalisation():
    s = _scene()
    out = _run(dict(type='ColorJitter', p=1.0), {k: v.copy()
                                                  for k, v in s.items()})
    assert not np.allclose(out['color'], s['color'])
    assert out['color'].min() >= 0 and out['color'].max() <= 255
    dark = dict(s, color=s['color'] * 0.2 + 10)
    out = _run(dict(type='ChromaticAutoContrast', p=1.0, blend_factor=1.0),
               {k: v.copy() for k, v in dark.items()})
    np.testing.assert_allclose(out['color'].max(0), 255, rtol=1e-4)
    np.testing.assert_allclose(out['color'].min(0), 0, atol=1e-3)
    out = _run(dict(type='NormalizeColor'), dict(color=np.array(
        [[0, 127.5, 255]], np.float32)))
    np.testing.assert_allclose(out['color'], [[-1, 0, 1]])


def test_color_drop_greys_the_whole_view_or_leaves_it():
    s = _scene()
    out = _run(dict(type='RandomColorDrop', p=1.0),
               {k: v.copy() for k, v in s.items()})
    np.testing.assert_array_equal(out['color'],
                                  np.full_like(s['color'], 127.5))
    assert out['color'].dtype == np.float32
    # geometry and normals untouched
    np.testing.assert_array_equal(out['coord'], s['coord'])
    np.testing.assert_array_equal(out['normal'], s['normal'])
    # grey is 0 once normalised: no colour, not black
    out = _run(dict(type='NormalizeColor'), out)
    np.testing.assert_array_equal(out['color'], 0.0)
    out = _run(dict(type='RandomColorDrop', p=0.0),
               {k: v.copy() for k, v in s.items()})
    np.testing.assert_array_equal(out['color'], s['color'])
    # with p=0.5 over many draws, about half the views lose their colour
    t = TRANSFORMS.build(dict(type='RandomColorDrop', p=0.5, value=0))
    rng = np.random.default_rng(0)
    dropped = sum(
        bool((t(dict(color=s['color'].copy(), rng=rng))['color'] == 0).all())
        for _ in range(400))
    assert 160 < dropped < 240
    out = t(dict(color=None, rng=rng))  # scenes without colour pass
    assert out['color'] is None
    with pytest.raises(ValueError, match='value must be a colour'):
        TRANSFORMS.build(dict(type='RandomColorDrop', value=300))


def test_same_rng_seed_same_result_and_different_seed_differs():
    s = _scene()
    cfg = dict(type='RandomRotateZ')
    a = _run(cfg, {k: v.copy() for k, v in s.items()}, seed=5)
    b = _run(cfg, {k: v.copy() for k, v in s.items()}, seed=5)
    c = _run(cfg, {k: v.copy() for k, v in s.items()}, seed=6)
    np.testing.assert_array_equal(a['coord'], b['coord'])
    assert not np.allclose(a['coord'], c['coord'])


def test_probability_zero_is_identity_and_bad_p_is_refused():
    s = _scene()
    out = _run(dict(type='RandomJitter', p=0.0), {k: v.copy()
                                                   for k, v in s.items()})
    np.testing.assert_array_equal(out['coord'], s['coord'])
    with pytest.raises(ValueError, match='p must be in'):
        TRANSFORMS.build(dict(type='RandomRotateZ', p=1.5))


@pytest.mark.parametrize('cfg', [
    dict(type='RandomRotateZ'),
    dict(type='RandomScale', scale=(0.5, 2.0)),
    dict(type='RandomScale', scale=(0.5, 2.0), anisotropic=True),
    dict(type='RandomFlip', p=1.0),
    dict(type='RandomFlip', p=0.5),
    dict(type='RandomTranslate'),
    dict(type='CenterShift'),
    dict(type='CenterShift', apply_z=False),
])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_geometric_transform_moves_normals_as_its_definition_says(cfg,
                                                                  seed):
    """Every geometric transform is affine on the coordinates: recover the
    map (A, t) from the points, then the normals must be the normals
    mapped by A's inverse transpose (renormalised), and the colours are
    untouched."""
    s = _scene(seed=seed)
    out = _run(cfg, {k: v.copy() for k, v in s.items()}, seed=seed)
    x = np.c_[s['coord'], np.ones(len(s['coord']))].astype(np.float64)
    sol, res, *_ = np.linalg.lstsq(x, out['coord'].astype(np.float64),
                                   rcond=None)
    a, t = sol[:3].T, sol[3]
    np.testing.assert_allclose(x @ sol, out['coord'], atol=1e-4)  # affine
    want = s['normal'] @ np.linalg.inv(a)  # n' ~ A^-T n, as rows
    want /= np.linalg.norm(want, axis=1, keepdims=True)
    np.testing.assert_allclose(out['normal'], want, atol=1e-4)
    np.testing.assert_array_equal(out['color'], s['color'])
    kind = cfg['type']
    if kind == 'RandomRotateZ':
        np.testing.assert_allclose(a @ a.T, np.eye(3), atol=1e-5)
        np.testing.assert_allclose(a[2], [0, 0, 1], atol=1e-5)
    if kind in ('RandomTranslate', 'CenterShift'):
        np.testing.assert_allclose(a, np.eye(3), atol=1e-5)
    if kind == 'CenterShift':
        lo, hi = s['coord'].min(0), s['coord'].max(0)
        shift = (lo + hi) / 2
        shift[2] = lo[2] if cfg.get('apply_z', True) else 0
        np.testing.assert_allclose(t, -shift, atol=1e-4)
    if kind == 'RandomFlip' and cfg['p'] == 1.0:
        np.testing.assert_allclose(a, np.diag([-1, -1, 1]), atol=1e-5)


def test_jitter_moves_points_within_the_clip_only():
    s = _scene()
    out = _run(dict(type='RandomJitter', sigma=0.01, clip=0.02),
               {k: v.copy() for k, v in s.items()})
    d = out['coord'] - s['coord']
    assert np.abs(d).max() <= 0.02 + 1e-6 and np.abs(d).max() > 0.01
    np.testing.assert_array_equal(out['normal'], s['normal'])
    np.testing.assert_array_equal(out['color'], s['color'])


@pytest.mark.parametrize('order', ['crop_then_patch', 'patch_then_crop'])
def test_two_masks_on_one_view_add_up(order):
    """A crop and a patch mask on one view: a point is hidden when either
    hides it (the union), whichever runs first."""
    s = _scene(n=2000, seed=1)
    crop = TRANSFORMS.build(dict(type='RandomViewCrop', ratio=0.6))
    patch = TRANSFORMS.build(dict(type='RandomPatchMask', ratio=0.4,
                                  patch_size=0.5))
    steps = [crop, patch] if order == 'crop_then_patch' else [patch, crop]
    # each step alone, drawing from the rng as it does in the sequence
    rng = np.random.default_rng(7)
    alone = []
    for t in steps:
        out = t(dict({k: v.copy() for k, v in s.items()}, rng=rng))
        alone.append(out['mask'])
    # both in sequence on one view
    results = dict({k: v.copy() for k, v in s.items()},
                   rng=np.random.default_rng(7))
    for t in steps:
        results = t(results)
    first, second = alone
    # neither contains the other, so overwriting would show
    assert (first & ~second).any() and (second & ~first).any()
    assert results['mask'].dtype == bool
    np.testing.assert_array_equal(results['mask'], first | second)
    # the coordinates are untouched: masks hide features only
    np.testing.assert_array_equal(results['coord'], s['coord'])


def test_on_views_masks_only_the_views_it_names():
    """OnViews(views=(0,)) inside MultiView: view 0 gets the patch mask
    it would get alone with that view's generator; view 1 stays as
    MultiView makes it without the mask, to the bit."""
    s = _scene(n=2000, seed=4)
    scene = dict({k: v.copy() for k, v in s.items()}, seed_key=(0, 0, 3))
    aug = [dict(type='RandomRotateZ'), dict(type='RandomJitter')]
    mask = dict(type='RandomPatchMask', ratio=0.4, patch_size=0.5)
    only0 = TRANSFORMS.build(dict(type='MultiView', num_views=2,
                                  transforms=aug + [dict(
                                      type='OnViews', views=(0, ),
                                      transforms=[mask])]))
    both = TRANSFORMS.build(dict(type='MultiView', num_views=2,
                                 transforms=aug + [mask]))
    none = TRANSFORMS.build(dict(type='MultiView', num_views=2,
                                 transforms=aug))
    v_only0 = only0(dict(scene))['views']
    v_both = both(dict(scene))['views']
    v_none = none(dict(scene))['views']
    assert 0.2 < v_only0[0]['mask'].mean() < 0.6
    np.testing.assert_array_equal(v_only0[0]['mask'], v_both[0]['mask'])
    assert 'mask' not in v_only0[1] and v_both[1]['mask'].any()
    for k in ('coord', 'normal', 'color'):
        np.testing.assert_array_equal(v_only0[1][k], v_none[1][k])
        np.testing.assert_array_equal(v_only0[0][k], v_none[0][k])
    assert 'view_index' not in v_only0[0]
    with pytest.raises(ValueError, match='views must be view numbers'):
        TRANSFORMS.build(dict(type='OnViews', views=(-1, )))
    with pytest.raises(KeyError, match='inside MultiView'):
        TRANSFORMS.build(dict(type='OnViews', transforms=[mask]))(
            dict(scene))


def test_patch_mask_hides_whole_patches():
    s = _scene(n=2000, seed=2)
    out = _run(dict(type='RandomPatchMask', ratio=0.4, patch_size=0.5),
               {k: v.copy() for k, v in s.items()}, seed=3)
    cell = np.floor(s['coord'] / 0.5).astype(np.int64)
    _, patch = np.unique(cell, axis=0, return_inverse=True)
    patch = patch.reshape(-1)
    hidden = np.zeros(patch.max() + 1, bool)
    hidden[patch[out['mask']]] = True
    # every point of a hidden patch is hidden, no other point
    np.testing.assert_array_equal(out['mask'], hidden[patch])
    assert hidden.sum() == round(0.4 * len(hidden))
