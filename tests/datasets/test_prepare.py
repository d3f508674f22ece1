"""End to end: input layouts -> prepared scene folders."""
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy.spatial import cKDTree

from dbbd.datasets.ply import write_ply
from dbbd.datasets.prepare import (DegenerateSceneError, check_cloud,
                                   format_summary, prepare_dataset)
from dbbd.datasets.scene_io import list_prepared, load_scene
from dbbd.datasets.synthetic import make_room, write_synthetic_dataset

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
FAST = dict(max_depth=2, min_points_to_split=32, progress=False,
            log=lambda m: None)


@pytest.fixture
def src(tmp_path):
    write_synthetic_dataset(tmp_path / 'src', num_train=2, num_val=1,
                            num_points=2000, seed=0)
    return tmp_path / 'src'


def _match(prepared, original):
    """Index of each prepared point in the original cloud (exact match up to
    float32 storage)."""
    d, i = cKDTree(original).query(prepared)
    assert d.max() < 1e-4
    assert len(np.unique(i)) == len(i)
    return i


def test_end_to_end(src, tmp_path):
    out = tmp_path / 'out'
    s = prepare_dataset(src, out, workers=0, **FAST)
    assert s['layout'] == 'pointcept'
    assert (s['scenes'], s['prepared'], s['skipped']) == (3, 3, 0)
    assert s['failed'] == [] and s['splits'] == {'train': 2, 'val': 1}
    assert s['points'] == 6000
    assert s['regions_per_level_mean'][:2] == [1, 8]
    assert 'prepared' in format_summary(s)
    dirs = list_prepared(out / 'train') + list_prepared(out / 'val')
    assert [os.path.basename(d) for d in dirs] == [
        'scene0000_00', 'scene0001_00', 'scene0002_00']
    sc = load_scene(out / 'train' / 'scene0001_00')
    m = sc['meta']
    assert m['layout'] == 'pointcept' and m['normal_source'] == 'file'
    assert (m['branching'], m['max_depth'], m['min_points_to_split']) == \
        (8, 2, 32)
    # every per-point array went through the same reorder
    room = make_room(2000, seed=(0, 1))
    xyz = sc['coord'].astype(np.float64) + m['origin']
    i = _match(xyz, room['coord'].astype(np.float32))
    assert np.array_equal(sc['segment'], room['segment'][i])
    assert np.array_equal(sc['color'], room['color'][i])
    np.testing.assert_allclose(sc['normal'], room['normal'][i], atol=1e-6)
    # points are in depth-first order: regions contiguous at the last level
    ids = sc['tree'].point_region[-1]
    ids = ids[ids >= 0]
    assert np.all(np.diff(ids) >= 0)


def test_skip_existing_overwrite_and_stale(src, tmp_path):
    out = tmp_path / 'out'
    prepare_dataset(src, out, workers=0, **FAST)
    meta = out / 'train' / 'scene0000_00' / 'meta.json'
    stamp = meta.stat().st_mtime_ns
    s = prepare_dataset(src, out, workers=0, **FAST)
    assert (s['prepared'], s['skipped'], s['points']) == (0, 3, 6000)
    assert meta.stat().st_mtime_ns == stamp
    notes = []
    s = prepare_dataset(src, out, workers=0, max_depth=1, progress=False,
                        log=notes.append)
    assert s['skipped'] == 3 and len(s['stale']) == 3
    assert any('--overwrite' in n for n in notes)
    s = prepare_dataset(src, out, workers=0, overwrite=True, **FAST)
    assert s['prepared'] == 3 and meta.stat().st_mtime_ns != stamp
    assert sorted(os.listdir(out / 'train')) == ['scene0000_00',
                                                 'scene0001_00']


def _corrupt(src):
    p = src / 'train' / 'scene0000_00' / 'coord.npy'
    p.write_bytes(p.read_bytes()[:150])
    return p


def test_bad_scene_fails_alone_in_workers(src, tmp_path):
    bad = _corrupt(src)
    out = tmp_path / 'out'
    s = prepare_dataset(src, out, workers=2, **FAST)  # spawn pool
    assert s['prepared'] == 2 and len(s['failed']) == 1
    f = s['failed'][0]
    assert f['scene_id'] == 'scene0000_00' and str(bad) in f['error']
    assert not (out / 'train' / 'scene0000_00').exists()
    assert load_scene(out / 'train' / 'scene0001_00')['coord'].shape[0] == \
        2000
    assert 'FAILED train/scene0000_00' in format_summary(s)


def test_cli(src, tmp_path, capsys):
    bad = _corrupt(src)
    out = tmp_path / 'out'
    cmd = [sys.executable, os.path.join(REPO, 'tools', 'create_data.py'),
           '--src', str(src), '--out', str(out), '--workers', '1',
           '--max-depth', '2', '--min-points-to-split', '32']
    # run from elsewhere: the script finds the package by itself
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1, r.stderr
    assert 'FAILED train/scene0000_00' in r.stdout and str(bad) in r.stdout
    assert 'scenes: 3 found, 2 prepared' in r.stdout
    assert len(list_prepared(out / 'val')) == 1
    # bad arguments: exit code 2 (in-process through the script's main)
    spec = importlib.util.spec_from_file_location('create_data', cmd[1])
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(['--src', str(tmp_path / 'nope'), '--out', str(out)]) \
        == 2
    assert 'does not exist' in capsys.readouterr().err


def test_voxel_subsample_and_val_ratio(tmp_path):
    write_synthetic_dataset(tmp_path / 'src', 4, 0, 3000, layout='files')
    # files layout with split folders; val_ratio only touches scenes
    # without a split, so flatten them
    flat = tmp_path / 'flat'
    flat.mkdir()
    for f in os.listdir(tmp_path / 'src' / 'train'):
        os.rename(tmp_path / 'src' / 'train' / f, flat / f)
    s = prepare_dataset(flat, tmp_path / 'out', workers=0, voxel_size=0.1,
                        val_ratio=0.25, **FAST)
    assert s['splits'] == {'train': 3, 'val': 1}
    assert 0 < s['points'] < 12000
    sc = load_scene(list_prepared(tmp_path / 'out' / 'val')[0])
    assert sc['meta']['voxel_size'] == 0.1
    assert sc['meta']['num_points'] < sc['meta']['num_points_raw']


def test_pca_and_mesh_normals_paths(tmp_path):
    # scannet layout without faces (PCA), labels via NYU40, far origin
    info = write_synthetic_dataset(tmp_path / 'sn', 1, 0, 3000,
                                   layout='scannet')
    s = prepare_dataset(tmp_path / 'sn', tmp_path / 'out',
                        splits=info['splits_dir'], workers=0, **FAST)
    assert s['prepared'] == 1
    sc = load_scene(tmp_path / 'out' / 'train' / 'scene0000_00')
    assert sc['meta']['normal_source'] == 'pca'
    room = make_room(3000, seed=(0, 0))
    i = _match(sc['coord'] + np.asarray(sc['meta']['origin']),
               room['coord'].astype(np.float32))
    assert np.array_equal(sc['segment'], room['segment'][i])
    # a far-from-origin mesh with faces: mesh normals, small stored coords
    x, y = np.meshgrid(np.arange(30.0), np.arange(30.0), indexing='ij')
    coord = np.stack([x.ravel() * 0.1, y.ravel() * 0.1,
                      np.zeros(x.size)], 1) + [600_000.0, 4_000_000.0, 50.0]
    k = (np.arange(29)[:, None] * 30 + np.arange(29)).ravel()
    faces = np.concatenate([np.stack([k, k + 30, k + 31], 1),
                            np.stack([k, k + 31, k + 1], 1)])
    (tmp_path / 'mesh').mkdir()
    write_ply(tmp_path / 'mesh' / 'm.ply', coord, faces=faces,
              coord_dtype='f8')
    prepare_dataset(tmp_path / 'mesh', tmp_path / 'out2', workers=0, **FAST)
    sc = load_scene(tmp_path / 'out2' / 'train' / 'm')
    assert sc['meta']['normal_source'] == 'mesh'
    np.testing.assert_allclose(sc['normal'][:, 2], 1, atol=1e-6)
    assert np.abs(sc['coord']).max() < 10
    back = sc['coord'] + np.asarray(sc['meta']['origin'])
    _match(back, coord)


def test_degenerate_clouds_are_refused_or_warned(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    rng = np.random.default_rng(0)
    pts = rng.random((300, 3)) * [4, 3, 2]
    t = np.linspace(0, 1, 300)[:, None]
    clouds = dict(
        one=np.tile([1.5, 2.5, 0.5], (500, 1)),      # no extent
        five=pts[:5],                                 # < one split
        line=t * [3.0, 1.0, 0.5] + [2, 2, 1],         # collinear
        plane=np.c_[pts[:, :2], np.full(300, 0.7)],   # planar
        dup=np.concatenate([pts, pts[:100], pts[:20]]),
        ok=pts)
    for name, a in clouds.items():
        np.save(src / f'{name}.npy', a)
    out = tmp_path / 'out'
    s = prepare_dataset(src, out, workers=0, **FAST)
    assert s['prepared'] == 4 and s['refused'] == 2
    refused = {f['scene_id']: f['error'] for f in s['failed']}
    assert set(refused) == {'one', 'five'}
    assert 'all 500 points are the same point (no extent)' in refused['one']
    assert '5 distinct points (of 5) are fewer than min_points_to_split=32' \
        in refused['five']
    assert not (out / 'train' / 'one').exists()
    warned = {w['scene_id']: w['warnings'] for w in s['warned']}
    assert set(warned) == {'line', 'plane', 'dup'}
    assert 'on a line' in warned['line'][0]
    assert 'in a plane' in warned['plane'][0]
    n_dup = len(clouds['dup']) - len(np.unique(clouds['dup'], axis=0))
    assert n_dup == 120
    assert warned['dup'] == [f'{n_dup} of 420 points (29%) repeat another '
                             'point exactly']
    text = format_summary(s)
    assert 'degenerate clouds: 2 refused, 3 prepared with a warning' in text
    assert 'REFUSED train/one' in text and 'WARNING train/dup' in text
    # the warnings live in meta.json: a re-run that skips still counts them
    again = prepare_dataset(src, out, workers=0, **FAST)
    assert again['skipped'] == 4
    assert {w['scene_id'] for w in again['warned']} == set(warned)


def test_refusal_threshold_is_one_split(tmp_path):
    rng = np.random.default_rng(1)
    pts = rng.random((32, 3))
    # 32 distinct points (with duplicates beyond) split; 31 do not
    assert check_cloud('a', np.concatenate([pts, pts[:8]]), 32) == [
        '8 of 40 points (20%) repeat another point exactly']
    with pytest.raises(DegenerateSceneError, match='31 distinct points'):
        check_cloud('a', np.concatenate([pts[:31], pts[:9]]), 32)


def _create_data():
    spec = importlib.util.spec_from_file_location(
        'create_data', os.path.join(REPO, 'tools', 'create_data.py'))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_label_map_ignore_label_and_class_counts(tmp_path, capsys):
    src = tmp_path / 'src'
    src.mkdir()
    rng = np.random.default_rng(3)
    coord = rng.random((400, 3)) * [4, 3, 2]
    label = rng.choice([1, 2, 7, 40, 255], 400)
    np.savez(src / 'a.npz', coord=coord, label=label)
    write_ply(src / 'b.ply', coord + 10, label=label, label_dtype='u1')
    tree = ['--max-depth', '2', '--min-points-to-split', '32', '--workers',
            '0', '--no-progress', '--layout', 'files']
    cli = _create_data()
    out = tmp_path / 'out'
    assert cli.main(['--src', str(src), '--out', str(out), '--label-map',
                     '1:0,2:1,7:-1', '--ignore-label', '255'] + tree) == 0
    text = capsys.readouterr().out
    n = {v: int((label == v).sum()) for v in (1, 2, 7, 40, 255)}
    unlab = 2 * (n[7] + n[40] + n[255])
    assert (f'points per class, 2 labelled scenes): 0: {2 * n[1]:,}, '
            f'1: {2 * n[2]:,}; unlabelled (-1): {unlab:,}') in text
    # 40 is in no map and not ignored: reported; 7 (mapped to -1) and 255
    # (ignored) were asked for
    assert (f'{2 * n[40]:,} input points had ids not in --label-map '
            f'(40: {2 * n[40]:,})') in text
    expect = np.select([label == 1, label == 2], [0, 1], -1)
    for name, shift in (('a', 0), ('b', 10)):
        sc = load_scene(out / 'train' / name)
        i = _match(sc['coord'] + np.asarray(sc['meta']['origin']),
                   (coord + shift).astype(np.float32))
        assert np.array_equal(sc['segment'], expect[i])
    # a JSON file is the same map; a different rule makes the scenes stale
    (tmp_path / 'map.json').write_text('{"1": 0, "2": 1, "7": -1}')
    s = prepare_dataset(src, tmp_path / 'out2', label_map=str(
        tmp_path / 'map.json'), ignore_labels=[255], workers=0, **FAST)
    assert s['class_counts'] == {-1: unlab, 0: 2 * n[1], 1: 2 * n[2]}
    s = prepare_dataset(src, out, workers=0, **FAST)
    assert len(s['stale']) == 2


def test_files_labels_default_to_scannet20_and_say_so(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    label = np.repeat([0, 5, 19, 20, 40, -1], 50)
    np.savez(src / 'a.npz', coord=np.random.default_rng(4).random((300, 3)),
             segment=label)
    s = prepare_dataset(src, tmp_path / 'out', workers=0, **FAST)
    assert s['class_counts'] == {-1: 150, 0: 50, 5: 50, 19: 50}
    assert s['label_unmapped'] == {20: 50, 40: 50}  # -1 is unlabelled
    assert ('100 input points had ids outside the ScanNet-20 ids 0..19 '
            '(20: 50, 40: 50)') in format_summary(s)


def test_bad_label_map_is_one_line(tmp_path, capsys):
    write_synthetic_dataset(tmp_path / 'pc', 1, 0, 500)
    cli = _create_data()
    for argv, words in (
            (['--src', str(tmp_path / 'pc'), '--label-map', '1-0'],
             'is not a SRC:DST pair'),
            (['--src', str(tmp_path / 'pc'), '--label-map', '1:40000'],
             "stored id of 1: '40000' is not an integer in -1..32767"),
            (['--src', str(tmp_path / 'pc'), '--label-map', '1:0'],
             'apply to generic point files (--layout files)'),
            (['--src', str(tmp_path / 'pc'), '--label-map',
              str(tmp_path / 'nope.json')], 'cannot read')):
        assert cli.main(argv + ['--out', str(tmp_path / 'o')]) == 2
        err = capsys.readouterr().err.strip()
        assert '\n' not in err and words in err, err
    assert not (tmp_path / 'o').exists()


def test_readme_label_map_example_runs(tmp_path, monkeypatch, capsys):
    """The --label-map example of docs/get_started.md, run as written."""
    import shlex

    from doc_snippets import snippet
    block = snippet('label-map')
    cmds = [shlex.split(ln) for ln in block.strip().splitlines()]
    assert [c[:2] for c in cmds] == [['python', '-c'],
                                     ['python', 'tools/create_data.py']]
    monkeypatch.chdir(tmp_path)
    exec(cmds[0][2], {})
    # as written, in this process (one worker: no process start-up cost)
    assert _create_data().main(cmds[1][2:] + ['--workers', '0']) == 0
    text = capsys.readouterr().out
    labels = np.concatenate([np.load(p)['segment'] for p in sorted(
        (tmp_path / 'data' / 'rooms_files' / 'train').iterdir())])
    n = {v: int((labels == v).sum()) for v in np.unique(labels)}
    assert f'points per class, 2 labelled scenes): 0: {n[0]:,}, ' \
        f'1: {n[1]:,}; unlabelled (-1):' in text
    other = {v: c for v, c in n.items() if v not in (-1, 0, 1, 19)}
    assert f'{sum(other.values()):,} input points had ids not in ' \
        '--label-map (' + ', '.join(f'{v}: {c:,}' for v, c in other.items()) \
        in text


def test_create_data_help_shows_every_default(capsys):
    cli = _create_data()
    parser = cli.build_parser()
    with pytest.raises(SystemExit) as e:
        cli.parse_args(['--help'])
    assert e.value.code == 0
    text = ' '.join(capsys.readouterr().out.split())
    text = text[text.index('options:'):]
    actions = [a for a in parser._actions if a.dest != 'help']
    starts = [text.index(' ' + a.option_strings[-1] + ' ') for a in actions]
    assert starts == sorted(starts)
    for a, lo, hi in zip(actions, starts, starts[1:] + [len(text)]):
        entry = text[lo:hi]
        if a.required:
            assert '(required' in entry and 'default' not in entry, entry
        elif a.default is None or a.default == []:
            assert 'default: none' in entry or 'default: one per CPU' in \
                entry, entry
        else:
            assert f'default: {a.default})' in entry, entry


def test_intensity_of_both_scan_layouts_is_prepared(tmp_path, capsys):
    from scan_files import write_scan_ply
    src = tmp_path / 'scans'
    src.mkdir()
    rgbi = write_scan_ply(src / 'a.ply', 'rgbi', n=600, seed=1)
    nrm = write_scan_ply(src / 'b.ply', 'normal', n=600, seed=2)
    write_ply(src / 'c.ply', rgbi['coord'], color=rgbi['color'])
    out = tmp_path / 'out'
    args = ['--src', str(src), '--out', str(out), '--layout', 'files',
            '--workers', '0', '--no-progress', '--voxel-size', '0.4',
            '--max-depth', '2', '--min-points-to-split', '32']
    assert _create_data().main(args) == 0
    text = capsys.readouterr().out
    # which optional fields were kept, and the fields not read, once each
    assert ('fields kept: color (3/3 scenes), intensity (2/3 scenes), '
            'normals from the source (1/3 scenes, the others PCA), labels '
            '(2/3 scenes)') in text, text
    assert ('fields ignored (in the source, not read): alpha (1 scenes), '
            'curvature (1 scenes)') in text, text
    assert text.count('curvature') == 1
    for name, a in (('a', rgbi), ('b', nrm)):
        sc = load_scene(out / 'train' / name)
        m = sc['meta']
        assert m['has_intensity'] and sc['intensity'].dtype == np.float32
        # subsampled and reordered with the points: the intensity of each
        # stored point is its source point's, at the source's scale
        assert m['num_points'] < 600
        i = _match(sc['coord'] + np.asarray(m['origin']), a['coord'])
        assert np.array_equal(sc['intensity'], a['intensity'][i])
        assert m['intensity_range'] == [float(sc['intensity'].min()),
                                        float(sc['intensity'].max())]
    assert load_scene(out / 'train' / 'b')['meta']['ignored_fields'] == [
        'curvature', 'alpha']
    c = load_scene(out / 'train' / 'c')
    assert c['intensity'] is None and not c['meta']['has_intensity']
    # skipped scenes report their fields from meta.json
    assert _create_data().main(args) == 0
    again = capsys.readouterr().out
    assert '3 skipped' in again and 'intensity (2/3 scenes)' in again
    assert 'curvature (1 scenes)' in again


def test_constant_intensity_and_scenes_prepared_without_it(tmp_path):
    src = tmp_path / 'src'
    src.mkdir()
    coord = np.random.default_rng(0).random((300, 3)) * [6, 5, 2]
    write_ply(src / 'z.ply', coord,
              extra={'scalar_intensity': np.zeros(300, 'f4')})
    out = tmp_path / 'out'
    s = prepare_dataset(src, out, workers=0, **FAST)
    assert s['fields'] == {'intensity': 1} and s['intensity_constant'] == 1
    assert 'intensity (1/1 scenes, constant in 1: no information there)' \
        in format_summary(s)
    # a scene prepared before intensity was read is reported stale
    meta_path = out / 'train' / 'z' / 'meta.json'
    meta = json.loads(meta_path.read_text())
    del meta['has_intensity']
    meta_path.write_text(json.dumps(meta))
    notes = []
    s = prepare_dataset(src, out, workers=0, **dict(FAST, log=notes.append))
    assert s['stale'] == ['train/z']
    assert any('intensity' in n and '--overwrite' in n for n in notes)


def test_far_outlier_is_refused_naming_the_point(tmp_path):
    """One coordinate of 1e30 among a room's points: refused naming the
    point (not prepared with a duplicates warning, which stored as float32
    it would be); a tiny scene (4 mm cube) is prepared with a warning."""
    src = tmp_path / 'src'
    src.mkdir()
    room = make_room(2000, seed=0)['coord'].astype(np.float64)
    far = room.copy()
    far[1234] = [1e30, 0.5, 0.5]
    tiny = np.random.default_rng(0).random((2000, 3)) * 0.004
    np.save(src / 'far.npy', far)
    np.save(src / 'tiny.npy', tiny)
    out = tmp_path / 'out'
    s = prepare_dataset(src, out, workers=0, **FAST)
    assert (s['prepared'], s['refused']) == (1, 1)
    (failed,) = s['failed']
    assert failed['scene_id'] == 'far' and failed['refused']
    assert failed['error'] == (
        f'{src / "far.npy"}: the points span 1e+30 m along x (a scene may '
        'span at most 10000 m); point 1234 at (1e+30, 0.5, 0.5) lies 1e+30 '
        'm from the median point: remove that outlier, or convert the '
        'coordinates to metres')
    assert not (out / 'train' / 'far').exists()
    (warned,) = s['warned']
    assert warned['scene_id'] == 'tiny'
    (msg,) = warned['warnings']
    assert msg.startswith('all points lie within 4 mm (the longest side); ')
    assert msg.endswith('at 2 cm voxels SpUNet sees 1 voxel(s)')


def test_loading_a_scene_with_a_far_outlier_names_the_file(tmp_path):
    """A scene prepared before the refusal existed: one line naming its
    coord.npy and the point."""
    from dbbd.datasets.scene_io import SceneFormatError
    src = tmp_path / 'src'
    src.mkdir()
    np.save(src / 'room.npy', make_room(2000, seed=0)['coord'])
    out = tmp_path / 'out'
    prepare_dataset(src, out, workers=0, **FAST)
    scene = out / 'train' / 'room'
    coord = np.load(scene / 'coord.npy')
    coord[7] = [0.5, 3e7, 0.5]
    np.save(scene / 'coord.npy', coord)
    with pytest.raises(SceneFormatError) as err:
        load_scene(str(scene))
    msg = str(err.value)
    assert '\n' not in msg
    assert msg.startswith(f'{scene / "coord.npy"}: the points span 3e+07 m '
                          'along y') and 'point 7 at (0.5, 3e+07, 0.5)' in msg
