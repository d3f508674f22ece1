"""Prepared scene folders: round trip, atomic writes, every bad input."""
import json
import os
import pathlib
import pickle

import numpy as np
import pytest

from dbbd.datasets import scene_io
from dbbd.datasets.region_tree import build_region_tree
from dbbd.datasets.scene_io import (FORMAT_VERSION, SceneFormatError,
                                    is_prepared, list_prepared, load_scene,
                                    save_scene)


def _scene(n=2000, seed=0, offset=(0.0, 0.0, 0.0)):
    rng = np.random.default_rng(seed)
    coord = rng.random((n, 3)) * [5, 4, 3] + np.asarray(offset)
    tree, order = build_region_tree(coord, max_depth=2,
                                    min_points_to_split=32, seed=0)
    normal = rng.normal(size=(n, 3))
    normal /= np.linalg.norm(normal, axis=1, keepdims=True)
    return dict(coord=coord[order], normal=normal[order], tree=tree,
                color=rng.integers(0, 256, (n, 3)).astype(np.uint8),
                segment=rng.integers(-1, 20, n).astype(np.int16))


@pytest.fixture
def saved(tmp_path):
    s = _scene()
    d = tmp_path / 'train' / 'scene0000_00'
    save_scene(d, s['coord'], s['normal'], s['tree'], color=s['color'],
               segment=s['segment'], meta=dict(layout='pointcept'))
    return d, s


def _assert_refused(d, *words, mmap=True):
    with pytest.raises(SceneFormatError) as e:
        load_scene(d, mmap=mmap)
    msg = str(e.value)
    assert '\n' not in msg
    for w in words:
        assert w in msg, msg
    return msg


def test_round_trip(saved):
    d, s = saved
    assert is_prepared(d)
    for mmap in (True, False):
        out = load_scene(d, mmap=mmap)
        assert out['scene_id'] == 'scene0000_00'
        assert out['coord'].dtype == np.float32
        assert out['normal'].dtype == np.float32
        assert out['color'].dtype == np.uint8
        assert out['segment'].dtype == np.int16
        assert out['tree'].point_region.dtype == np.int32
        assert out['tree'].level_offset.dtype == np.int64
        np.testing.assert_allclose(out['coord'], s['coord'], atol=1e-6)
        np.testing.assert_allclose(out['normal'], s['normal'], atol=1e-7)
        assert np.array_equal(out['color'], s['color'])
        assert np.array_equal(out['segment'], s['segment'])
        for k in ('point_region', 'region_parent', 'region_center',
                  'level_offset'):
            assert np.array_equal(getattr(out['tree'], k),
                                  getattr(s['tree'], k))
    meta = out['meta']
    assert meta['format_version'] == FORMAT_VERSION
    assert meta['num_points'] == 2000 and meta['depth'] == 2
    assert meta['regions_per_level'] == s['tree'].regions_per_level.tolist()
    assert meta['has_color'] and meta['has_segment']
    assert meta['layout'] == 'pointcept' and meta['origin'] == [0, 0, 0]
    assert 'branching' in meta  # contract keys exist even when not given
    assert list_prepared(d.parent) == [str(d)]


def test_optional_arrays_and_origin(tmp_path):
    s = _scene(offset=(500_000.0, 200_000.0, 30.0))
    origin = np.floor(s['coord'].min(0))
    d = tmp_path / 's'
    save_scene(d, s['coord'], s['normal'], s['tree'], origin=origin)
    out = load_scene(d)
    assert out['color'] is None and out['segment'] is None
    assert not out['meta']['has_color']
    # far from the origin, the stored offsets keep sub-micrometre precision
    back = out['coord'].astype(np.float64) + np.asarray(out['meta']['origin'])
    assert np.abs(back - s['coord']).max() < 1e-6


def test_overwrite_and_no_leftovers(saved):
    d, s = saved
    with pytest.raises(FileExistsError):
        save_scene(d, s['coord'], s['normal'], s['tree'])
    save_scene(d, s['coord'] + 1, s['normal'], s['tree'], overwrite=True)
    np.testing.assert_allclose(load_scene(d)['coord'], s['coord'] + 1,
                               atol=1e-5)
    assert load_scene(d)['color'] is None  # the old folder was replaced
    assert sorted(os.listdir(d.parent)) == ['scene0000_00']


def _fail_on_third(monkeypatch):
    calls = []
    real = scene_io._save_npy

    def flaky(path, arr):
        calls.append(path)
        if len(calls) == 3:
            raise OSError('disk full (simulated)')
        real(path, arr)
    monkeypatch.setattr(scene_io, '_save_npy', flaky)


def test_atomic_write_leaves_nothing_on_failure(tmp_path, monkeypatch):
    s = _scene()
    d = tmp_path / 'train' / 'a'
    _fail_on_third(monkeypatch)
    with pytest.raises(OSError, match='disk full'):
        save_scene(d, s['coord'], s['normal'], s['tree'])
    assert not d.exists()
    assert os.listdir(d.parent) == []


def test_failed_overwrite_keeps_old_scene(saved, monkeypatch):
    d, s = saved
    _fail_on_third(monkeypatch)
    with pytest.raises(OSError):
        save_scene(d, s['coord'] + 5, s['normal'], s['tree'],
                   overwrite=True)
    out = load_scene(d)
    np.testing.assert_allclose(out['coord'], s['coord'], atol=1e-6)
    assert os.listdir(d.parent) == ['scene0000_00']


def test_list_prepared_skips_unfinished(saved):
    d, _ = saved
    (d.parent / 'x.tmp-123').mkdir()
    (d.parent / 'x.tmp-123' / 'meta.json').write_text('{}')
    (d.parent / 'half').mkdir()
    assert list_prepared(d.parent) == [str(d)]
    assert not is_prepared(d.parent / 'half')


@pytest.mark.parametrize('mmap', [True, False])
def test_truncated_file(saved, mmap):
    d, _ = saved
    p = d / 'coord.npy'
    p.write_bytes(p.read_bytes()[:200])
    _assert_refused(d, 'coord.npy', '--overwrite', mmap=mmap)


def test_corrupt_file(saved):
    d, _ = saved
    (d / 'normal.npy').write_bytes(b'\x93NUMPY garbage' + b'\0' * 50)
    _assert_refused(d, 'normal.npy')


def test_pickled_object_array_refused(saved):
    d, _ = saved
    np.save(d / 'segment.npy', np.array([{'a': 1}] * 2000, dtype=object),
            allow_pickle=True)
    _assert_refused(d, 'segment.npy', 'refusing to unpickle')
    _assert_refused(d, 'segment.npy', 'refusing to unpickle', mmap=False)


class _Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_crafted_pickle_never_runs(saved, tmp_path):
    d, _ = saved
    marker = tmp_path / 'PWNED'
    # a bare pickle in place of an .npy, and an object .npy holding one
    (d / 'coord.npy').write_bytes(pickle.dumps(_Payload(marker)))
    _assert_refused(d, 'coord.npy', 'refusing to unpickle', mmap=False)
    _assert_refused(d, 'coord.npy', 'refusing to unpickle', mmap=True)
    np.save(d / 'normal.npy',
            np.array([_Payload(marker)], dtype=object), allow_pickle=True)
    with pytest.raises(SceneFormatError):
        load_scene(d)
    assert not marker.exists()
    # the payload is live: unpickling it for real does create the marker
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()


def test_mismatched_lengths(saved):
    d, s = saved
    np.save(d / 'normal.npy', s['normal'][:-1].astype(np.float32))
    _assert_refused(d, 'normal.npy', '(1999, 3)', '(2000, 3)')


def test_mismatched_segment_and_meta(saved):
    d, s = saved
    np.save(d / 'segment.npy', s['segment'][:10])
    _assert_refused(d, 'segment.npy')


def test_wrong_dtype(saved):
    d, s = saved
    np.save(d / 'coord.npy', s['coord'].astype(np.int32))
    _assert_refused(d, 'coord.npy', 'dtype')


def test_tree_index_out_of_range(saved):
    d, s = saved
    pr = s['tree'].point_region.copy()
    pr[1, 5] = 10_000
    np.save(d / 'tree_point_region.npy', pr)
    _assert_refused(d, 'tree', 'out of range')


def test_tree_center_out_of_range(saved):
    d, s = saved
    c = s['tree'].region_center.copy()
    c[0] = 2000
    np.save(d / 'tree_region_center.npy', c)
    _assert_refused(d, 'tree', 'region_center')


@pytest.mark.parametrize('value', [np.nan, np.inf])
def test_nonfinite_coords(saved, value):
    d, s = saved
    c = s['coord'].astype(np.float32)
    c[7, 1] = value
    np.save(d / 'coord.npy', c)
    _assert_refused(d, 'coord.npy', 'NaN/Inf')
    load_scene(d, check=False)  # value checks can be skipped


def test_empty_scene(saved):
    d, _ = saved
    np.save(d / 'coord.npy', np.zeros((0, 3), np.float32))
    _assert_refused(d, 'coord.npy', 'empty')


def test_missing_folder_and_file(saved, tmp_path):
    d, _ = saved
    _assert_refused(tmp_path / 'nope', 'nope', 'does not exist')
    os.remove(d / 'normal.npy')
    _assert_refused(d, 'normal.npy', 'missing')


def test_meta_unreadable_or_newer(saved):
    d, _ = saved
    meta = json.loads((d / 'meta.json').read_text())
    (d / 'meta.json').write_text('{"format_version": ')
    _assert_refused(d, 'meta.json', 'unreadable')
    meta['format_version'] = FORMAT_VERSION + 1
    (d / 'meta.json').write_text(json.dumps(meta))
    _assert_refused(d, 'meta.json', 'newer')
    os.remove(d / 'meta.json')
    assert not is_prepared(d)
    _assert_refused(d, 'meta.json', 'missing')


def test_save_rejects_bad_input(tmp_path):
    s = _scene()
    with pytest.raises(ValueError, match='normal'):
        save_scene(tmp_path / 'a', s['coord'], s['normal'][:-1], s['tree'])
    bad = s['coord'].copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match='NaN'):
        save_scene(tmp_path / 'b', bad, s['normal'], s['tree'])
    assert os.listdir(tmp_path) == []


def test_recover_interrupted(saved):
    d, s = saved
    split = d.parent
    dead = 2 ** 22 + 12345  # above Linux's default pid_max: never running
    # a crash mid-write, and a crash between moving aside and renaming in
    (split / f'b.tmp-{dead}').mkdir()
    os.rename(d, split / f'scene0000_00.old-{dead}')
    (split / f'c.tmp-{os.getpid()}').mkdir()  # a live writer: left alone
    done = scene_io.recover_interrupted(split)
    assert sorted(done) == [f'b.tmp-{dead}', f'scene0000_00.old-{dead}']
    assert sorted(os.listdir(split)) == [f'c.tmp-{os.getpid()}',
                                         'scene0000_00']
    assert load_scene(d)['coord'].shape == (2000, 3)


def test_link_out_of_the_scene_is_refused(saved, tmp_path):
    d, s = saved
    # a well-formed array, but outside the scene folder: still refused
    outside = tmp_path / 'elsewhere.npy'
    os.rename(d / 'coord.npy', outside)
    os.symlink(outside, d / 'coord.npy')
    msg = _assert_refused(d, 'coord.npy', 'symbolic link', str(outside),
                          'outside the scene folder')
    assert 'pickle' not in msg
    os.remove(d / 'coord.npy')
    os.symlink('/etc/passwd', d / 'coord.npy')
    _assert_refused(d, 'coord.npy', 'symbolic link to /etc/passwd')
    # meta.json is read through the same check
    (tmp_path / 'meta.json').write_text((d / 'meta.json').read_text())
    os.remove(d / 'meta.json')
    os.symlink(tmp_path / 'meta.json', d / 'meta.json')
    _assert_refused(d, 'meta.json', 'outside the scene folder')
    # a link that stays inside the folder is the scene's own file
    os.remove(d / 'meta.json')
    os.rename(tmp_path / 'meta.json', d / 'meta.json')
    os.remove(d / 'coord.npy')
    os.rename(outside, d / 'coord_data.npy')
    os.symlink('coord_data.npy', d / 'coord.npy')
    np.testing.assert_allclose(load_scene(d)['coord'], s['coord'], atol=1e-6)


def test_file_that_is_not_numpy_is_named_as_such(saved):
    d, _ = saved
    (d / 'coord.npy').write_bytes(b'root:x:0:0:root:/root:/bin/bash\n')
    msg = _assert_refused(d, 'coord.npy', 'is not a numpy file',
                          "b'root:x:0'")
    assert 'pickle' not in msg
    (d / 'coord.npy').write_bytes(b'')
    _assert_refused(d, 'coord.npy', 'empty (0 bytes)')


@pytest.mark.parametrize('key,value,expect', [
    ('num_points', '2000', "num_points is '2000' (a str), expected an "
                           'integer'),
    ('num_points', 2000.0, 'num_points is 2000.0 (a float)'),
    ('has_color', 'yes', "has_color is 'yes' (a str), expected true or "
                         'false'),
    ('origin', [0, 0], 'origin is [0, 0] (a list), expected a list of 3'),
])
def test_meta_field_of_the_wrong_type_is_named(saved, key, value, expect):
    d, _ = saved
    meta = json.loads((d / 'meta.json').read_text())
    meta[key] = value
    (d / 'meta.json').write_text(json.dumps(meta))
    msg = _assert_refused(d, 'meta.json', expect)
    assert 'but meta.json says' not in msg


def test_intensity_round_trip_and_checks(tmp_path):
    s = _scene()
    inten = np.random.default_rng(1).integers(0, 65536, 2000).astype(
        np.float32)
    d = tmp_path / 'i'
    meta = save_scene(d, s['coord'], s['normal'], s['tree'], intensity=inten)
    assert meta['has_intensity'] is True
    for mmap in (True, False):
        out = load_scene(d, mmap=mmap)
        assert out['intensity'].dtype == np.float32
        assert np.array_equal(out['intensity'], inten)
    assert json.loads((d / 'meta.json').read_text())['has_intensity']
    # a scene without intensity says so
    save_scene(tmp_path / 'n', s['coord'], s['normal'], s['tree'])
    out = load_scene(tmp_path / 'n')
    assert out['intensity'] is None and not out['meta']['has_intensity']
    assert not (tmp_path / 'n' / 'intensity.npy').exists()
    # every way intensity.npy can be wrong is one line naming the file
    np.save(d / 'intensity.npy', inten[:-1])
    _assert_refused(d, 'intensity.npy', '(1999,)', '(2000,)')
    np.save(d / 'intensity.npy', inten.astype(np.int32))
    _assert_refused(d, 'intensity.npy', 'dtype')
    bad = inten.copy()
    bad[3] = np.nan
    np.save(d / 'intensity.npy', bad)
    _assert_refused(d, 'intensity.npy', 'NaN/Inf')
    os.remove(d / 'intensity.npy')
    _assert_refused(d, 'intensity.npy', 'has_intensity=true')
    with pytest.raises(ValueError, match='intensity has shape'):
        save_scene(tmp_path / 'w', s['coord'], s['normal'], s['tree'],
                   intensity=inten[:5])
    assert not (tmp_path / 'w').exists()
