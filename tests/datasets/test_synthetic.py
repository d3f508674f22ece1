"""Synthetic rooms and the synthetic dataset writer."""
import numpy as np
import pytest

from dbbd.datasets.readers import detect_layout, find_scenes
from dbbd.datasets.synthetic import make_room, write_synthetic_dataset


def test_deterministic_by_seed():
    a, b = make_room(3000, seed=5), make_room(3000, seed=5)
    for k in a:
        assert np.array_equal(a[k], b[k])
    c = make_room(3000, seed=6)
    assert not np.array_equal(a['coord'], c['coord'])


def test_contents():
    r = make_room(4000, seed=1, noise=0.0)
    n = 4000
    assert r['coord'].shape == (n, 3) and r['coord'].dtype == np.float64
    assert r['color'].shape == (n, 3) and r['color'].dtype == np.uint8
    assert r['segment'].shape == (n,) and r['segment'].dtype == np.int16
    assert r['segment'].min() >= -1 and r['segment'].max() <= 19
    np.testing.assert_allclose(np.linalg.norm(r['normal'], axis=1), 1,
                               atol=1e-6)
    floor = r['segment'] == 1
    assert floor.any() and (r['segment'] == 0).any()
    # the floor is z = 0 with normal +z (no noise here)
    np.testing.assert_allclose(r['coord'][floor, 2], 0, atol=1e-12)
    assert np.all(r['normal'][floor] == [0, 0, 1])
    # the partial ceiling exists (-1), above everything else
    ceil = r['segment'] == -1
    assert ceil.any() and np.all(r['normal'][ceil, 2] == -1)
    assert r['coord'][~ceil, 2].max() <= r['coord'][ceil, 2].min() + 1e-9
    # furniture: at least one label beyond wall/floor/door/window/picture
    assert np.isin(r['segment'], [2, 3, 4, 5, 6, 9, 11, 12, 14, 19]).any()


def test_options():
    r = make_room(2000, seed=2, ceiling=0.0, origin=(1000.0, 0, 0))
    assert not (r['segment'] == -1).any()
    assert r['coord'][:, 0].min() > 990


@pytest.mark.parametrize('layout', ['pointcept', 'files', 'mmdet3d',
                                    'scannet'])
def test_write_dataset_layouts(tmp_path, layout):
    info = write_synthetic_dataset(tmp_path / layout, num_train=2, num_val=1,
                                   num_points=500, seed=0, layout=layout)
    assert detect_layout(tmp_path / layout) == layout
    found, scenes = find_scenes(tmp_path / layout,
                                splits=info['splits_dir'] if layout ==
                                'scannet' else None, log=lambda m: None)
    assert found == layout
    assert sorted((s.split, s.scene_id) for s in scenes) == sorted(
        (sp, sid) for sp, ids in info['splits'].items() for sid in ids)
    d = scenes[0].load()
    room = make_room(500, seed=(0, 0))
    np.testing.assert_allclose(d['coord'], room['coord'], atol=1e-5)
    assert np.array_equal(d['segment'], room['segment'])
    assert np.array_equal(d['color'], room['color'])


def test_write_dataset_deterministic(tmp_path):
    for name in ('a', 'b'):
        write_synthetic_dataset(tmp_path / name, 1, 1, 300, seed=4)
    for f in ('train/scene0000_00/coord.npy', 'val/scene0001_00/color.npy'):
        assert (tmp_path / 'a' / f).read_bytes() == \
            (tmp_path / 'b' / f).read_bytes()
    with pytest.raises(ValueError, match='layout'):
        write_synthetic_dataset(tmp_path / 'c', 1, 0, 10, layout='kitti')
