"""PLY reading/writing and the four input layouts."""
import os

import numpy as np
import pytest

from dbbd.datasets.ply import read_ply, read_ply_points, write_ply
from dbbd.datasets.readers import (SCANNET20_NYU40_IDS, clean_scannet20,
                                   detect_layout, find_scenes,
                                   nyu40_to_scannet20)


def _grid_mesh(nx=4, ny=3, z=0.0):
    """A flat triangulated grid (counter-clockwise seen from +z)."""
    x, y = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float),
                       indexing='ij')
    coord = np.stack([x.ravel(), y.ravel(), np.full(x.size, z)], 1)
    i = np.arange(nx - 1)[:, None] * ny + np.arange(ny - 1)[None, :]
    i = i.ravel()
    faces = np.concatenate([np.stack([i, i + ny, i + ny + 1], 1),
                            np.stack([i, i + ny + 1, i + 1], 1)])
    return coord, faces


# ------------------------------------------------------------------ PLY

@pytest.mark.parametrize('binary,order', [(True, '<'), (True, '>'),
                                          (False, '<')])
def test_ply_round_trip_formats(tmp_path, binary, order):
    rng = np.random.default_rng(0)
    coord = rng.random((50, 3)) * 10 + [500_000.123456789, -250_000.5, 12]
    color = rng.integers(0, 256, (50, 3)).astype(np.uint8)
    normal = rng.normal(size=(50, 3)).astype(np.float32)
    label = rng.integers(0, 41, 50)
    p = tmp_path / 'a.ply'
    write_ply(p, coord, color=color, normal=normal, label=label,
              binary=binary, byte_order=order, coord_dtype='f8',
              extra={'quality': rng.random(50).astype(np.float32)})
    d = read_ply_points(p)
    # double coordinates far from the origin come back exactly
    assert d['coord'].dtype == np.float64
    assert np.array_equal(d['coord'], coord)
    assert np.array_equal(d['color'], color)
    np.testing.assert_allclose(d['normal'], normal, rtol=1e-6)
    assert np.array_equal(d['label'], label)
    assert d['faces'] is None


@pytest.mark.parametrize('dtype', ['u1', 'i2', 'u2', 'i4', 'u4', 'f4', 'f8'])
def test_ply_label_types(tmp_path, dtype):
    label = np.array([0, 1, 5, 39, 40, 17])
    p = tmp_path / f'l_{dtype}.ply'
    write_ply(p, np.zeros((6, 3)), label=label, label_dtype=dtype)
    d = read_ply_points(p)
    assert d['label'].dtype == np.int64
    assert np.array_equal(d['label'], label)
    assert d['color'] is None and d['normal'] is None


@pytest.mark.parametrize('binary', [True, False])
def test_ply_float_colours(tmp_path, binary):
    color = np.array([[0, 128, 255], [255, 0, 1]], np.uint8)
    p = tmp_path / 'c.ply'
    write_ply(p, np.zeros((2, 3)), color=color, color_dtype='f4',
              binary=binary)
    assert 'property float red' in p.read_bytes()[:300].decode('latin1')
    assert np.array_equal(read_ply_points(p)['color'], color)


@pytest.mark.parametrize('binary', [True, False])
@pytest.mark.parametrize('index_dtype', ['i4', 'u4'])
def test_ply_mesh_faces(tmp_path, binary, index_dtype):
    coord, faces = _grid_mesh()
    p = tmp_path / 'm.ply'
    write_ply(p, coord, color=np.full((len(coord), 3), 9, np.uint8),
              faces=faces, binary=binary, face_index_dtype=index_dtype)
    d = read_ply_points(p)
    assert np.array_equal(d['faces'], faces)
    assert np.array_equal(d['coord'], coord)


def test_ply_quads_fan_triangulated(tmp_path):
    coord = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], float)
    p = tmp_path / 'q.ply'
    write_ply(p, coord, faces=np.array([[0, 1, 2, 3]]))
    assert read_ply_points(p)['faces'].tolist() == [[0, 1, 2], [0, 2, 3]]


def test_ply_vertex_index_name_and_uchar_colour(tmp_path):
    # hand-written ascii file: 'vertex_index', 'r g b' uchar, comments
    text = ('ply\nformat ascii 1.0\ncomment hi\nelement vertex 3\n'
            'property float x\nproperty float y\nproperty float z\n'
            'property uchar r\nproperty uchar g\nproperty uchar b\n'
            'element face 1\nproperty list uchar int vertex_index\n'
            'end_header\n0 0 0 1 2 3\n1 0 0 4 5 6\n0 1 0 7 8 9\n3 0 1 2\n')
    p = tmp_path / 'h.ply'
    p.write_text(text)
    d = read_ply_points(p)
    assert d['color'].tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 9]]
    assert d['faces'].tolist() == [[0, 1, 2]]
    assert set(read_ply(p)) == {'vertex', 'face'}


def _assert_ply_error(path, *words):
    with pytest.raises(ValueError) as e:
        read_ply_points(path)
    msg = str(e.value)
    assert str(path) in msg and '\n' not in msg
    for w in words:
        assert w in msg, msg


def test_ply_bad_files(tmp_path):
    coord, faces = _grid_mesh()
    p = tmp_path / 'm.ply'
    write_ply(p, coord, faces=faces)
    raw = p.read_bytes()
    t = tmp_path / 'trunc.ply'
    t.write_bytes(raw[:-10])
    _assert_ply_error(t, 'truncated')
    n = tmp_path / 'notply.ply'
    n.write_bytes(b'hello world')
    _assert_ply_error(n, 'not a PLY')
    h = tmp_path / 'noend.ply'
    h.write_bytes(b'ply\nformat ascii 1.0\nelement vertex 1\n')
    _assert_ply_error(h, 'end_header')
    x = tmp_path / 'nox.ply'
    x.write_text('ply\nformat ascii 1.0\nelement vertex 1\nproperty float a'
                 '\nend_header\n1\n')
    _assert_ply_error(x, 'x, y, z')
    f = tmp_path / 'badface.ply'
    write_ply(f, coord, faces=faces + 100)
    _assert_ply_error(f, 'out of range')
    a = tmp_path / 'ascii.ply'
    a.write_text('ply\nformat ascii 1.0\nelement vertex 1\nproperty float x'
                 '\nproperty float y\nproperty float z\nend_header\n'
                 '1 2 oops\n')
    _assert_ply_error(a, 'not a number')
    _assert_ply_error(tmp_path / 'missing.ply', 'cannot read')
    head = ('ply\nformat {} 1.0\nelement vertex 4\nproperty float x\n'
            'property float y\nproperty float z\nelement face 2\n'
            'property list uchar int vertex_indices\nend_header\n')
    mixed = tmp_path / 'mixed.ply'
    mixed.write_text(head.format('ascii') + '0 0 0\n1 0 0\n1 1 0\n0 1 0\n'
                     '3 0 1 2\n4 0 1 2 3\n')
    _assert_ply_error(mixed, 'different lengths')
    rows = np.zeros(4, [('x', '<f4'), ('y', '<f4'), ('z', '<f4')]).tobytes()
    tri = np.array([3], 'u1').tobytes() + np.array([0, 1, 2], '<i4').tobytes()
    quad = np.array([4], 'u1').tobytes() + np.arange(4, dtype='<i4').tobytes()
    mixed.write_bytes(head.format('binary_little_endian').encode() + rows
                      + tri + quad + b'\0' * 3)
    _assert_ply_error(mixed, 'different lengths')


# ----------------------------------------------------------- label maps

def test_nyu40_to_scannet20():
    nyu = np.arange(-1, 45)
    out = nyu40_to_scannet20(nyu)
    expect = np.full(nyu.shape, -1)
    for i, v in enumerate(SCANNET20_NYU40_IDS):
        expect[nyu == v] = i
    assert np.array_equal(out, expect)
    assert out[nyu == 1][0] == 0 and out[nyu == 39][0] == 19
    assert out[nyu == 13][0] == -1 and out[nyu == 0][0] == -1
    assert np.array_equal(clean_scannet20([0, 19, 20, 255, -1, -7]),
                          [0, 19, -1, -1, -1, -1])


# --------------------------------------------------------------- layouts

def _write_scannet(root, names, labels_nyu, test_names=()):
    coord, faces = _grid_mesh(6, 5)
    for name in names:
        d = root / 'scans' / name
        d.mkdir(parents=True)
        write_ply(d / f'{name}_vh_clean_2.ply', coord,
                  color=np.full((len(coord), 3), 100, np.uint8), faces=faces,
                  extra={'alpha': np.full(len(coord), 255, np.uint8)})
        write_ply(d / f'{name}_vh_clean_2.labels.ply', coord,
                  label=labels_nyu, label_dtype='u2', faces=faces)
    for name in test_names:
        d = root / 'scans_test' / name
        d.mkdir(parents=True)
        write_ply(d / f'{name}_vh_clean_2.ply', coord, faces=faces)
    return coord, faces


def test_scannet_layout(tmp_path):
    src = tmp_path / 'scannet'
    labels = np.resize(np.array([1, 2, 39, 13, 0, 40, 24]), 30)
    coord, faces = _write_scannet(
        src, ['scene0000_00', 'scene0001_00', 'scene0002_00'], labels,
        test_names=['scene0707_00'])
    splits = tmp_path / 'splits'
    splits.mkdir()
    (splits / 'scannetv2_train.txt').write_text('scene0000_00\n')
    (splits / 'scannetv2_val.txt').write_text('scene0001_00\n')
    notes = []
    assert detect_layout(src) == 'scannet'
    layout, scenes = find_scenes(src, splits=str(splits), log=notes.append)
    got = {(s.split, s.scene_id) for s in scenes}
    # scene0002_00 is in no list: skipped and said so; scans_test -> test
    assert got == {('train', 'scene0000_00'), ('val', 'scene0001_00'),
                   ('test', 'scene0707_00')}
    assert any('no split list' in n for n in notes)
    d = next(s for s in scenes if s.scene_id == 'scene0000_00').load()
    assert np.array_equal(d['coord'], coord)
    assert np.array_equal(d['faces'], faces)
    assert d['color'].dtype == np.uint8 and d['color'].shape == (30, 3)
    assert np.array_equal(d['segment'], nyu40_to_scannet20(labels))
    assert d['segment'][:7].tolist() == [0, 1, 19, -1, -1, -1, 14]
    t = next(s for s in scenes if s.split == 'test').load()
    assert t['segment'] is None and t['color'] is None


def test_scannet_layout_missing_mesh_fails_that_scene(tmp_path):
    src = tmp_path / 'scans'
    (src / 'scene0003_00').mkdir(parents=True)
    coord, faces = _grid_mesh()
    (src / 'scene0004_00').mkdir()
    write_ply(src / 'scene0004_00' / 'scene0004_00_vh_clean_2.ply', coord,
              faces=faces)
    layout, scenes = find_scenes(src, layout='scannet', log=lambda m: None)
    assert [s.scene_id for s in scenes] == ['scene0003_00', 'scene0004_00']
    with pytest.raises(ValueError, match='scene0003_00_vh_clean_2.ply'):
        scenes[0].load()
    assert scenes[1].load()['coord'].shape == (12, 3)


def _write_pointcept(root, split, name, n=40, seg=None, color_dtype='u1'):
    d = root / split / name
    d.mkdir(parents=True)
    rng = np.random.default_rng(len(name))
    np.save(d / 'coord.npy', rng.random((n, 3)).astype(np.float32))
    color = rng.integers(0, 256, (n, 3))
    np.save(d / 'color.npy', color.astype(color_dtype))
    np.save(d / 'normal.npy', np.tile([0, 0, 1], (n, 1)).astype(np.float32))
    if seg is not None:
        np.save(d / 'segment20.npy', np.asarray(seg))
    return color


def test_pointcept_layout(tmp_path):
    src = tmp_path / 'pc'
    seg = np.resize(np.array([0, 19, 255, -1, 7, 20]), 40)
    color = _write_pointcept(src, 'train', 'scene0000_00', seg=seg)
    _write_pointcept(src, 'val', 'scene0001_00')
    assert detect_layout(src) == 'pointcept'
    layout, scenes = find_scenes(src)
    assert [(s.split, s.scene_id) for s in scenes] == [
        ('train', 'scene0000_00'), ('val', 'scene0001_00')]
    d = scenes[0].load()
    assert d['segment'][:6].tolist() == [0, 19, -1, -1, 7, -1]
    assert np.array_equal(d['color'], color)
    assert d['normal'].shape == (40, 3) and d['faces'] is None
    assert scenes[1].load()['segment'] is None


def test_pointcept_bad_file(tmp_path):
    src = tmp_path / 'pc'
    _write_pointcept(src, 'train', 'a')
    p = src / 'train' / 'a' / 'coord.npy'
    p.write_bytes(p.read_bytes()[:100])
    _, scenes = find_scenes(src)
    with pytest.raises(ValueError, match='coord.npy'):
        scenes[0].load()


def _write_mmdet3d(root, names, n=30, meta=True):
    rng = np.random.default_rng(0)
    (root / 'points').mkdir(parents=True)
    (root / 'semantic_mask').mkdir()
    mask = np.resize(np.array([1, 2, 39, 0, 22, 20, 5]), n).astype('<i8')
    pts = np.concatenate([rng.random((n, 3)) * 5,
                          rng.integers(0, 256, (n, 3))], 1).astype('<f4')
    for name in names:
        pts.tofile(root / 'points' / f'{name}.bin')
        mask.tofile(root / 'semantic_mask' / f'{name}.bin')
    if meta:
        (root / 'meta_data').mkdir()
        (root / 'meta_data' / 'scannetv2_train.txt').write_text(
            names[0] + '\n')
        (root / 'meta_data' / 'scannetv2_val.txt').write_text(
            '\n'.join(names[1:]) + '\n')
    return pts, mask


def test_mmdet3d_layout(tmp_path):
    src = tmp_path / 'mm'
    pts, mask = _write_mmdet3d(src, ['scene0000_00', 'scene0001_00'])
    assert detect_layout(src) == 'mmdet3d'
    _, scenes = find_scenes(src)  # splits from SRC/meta_data
    assert [(s.split, s.scene_id) for s in scenes] == [
        ('train', 'scene0000_00'), ('val', 'scene0001_00')]
    d = scenes[0].load()
    np.testing.assert_allclose(d['coord'], pts[:, :3])
    assert np.array_equal(d['color'], pts[:, 3:6].astype(np.uint8))
    # mmdet3d's converter stores NYU40 ids
    assert np.array_equal(d['segment'], nyu40_to_scannet20(mask))
    _, scenes = find_scenes(src, mmdet3d_label_ids='scannet20')
    assert scenes[0].load()['segment'][:7].tolist() == [1, 2, -1, 0, -1,
                                                        -1, 5]
    # a truncated points file names itself
    raw = (src / 'points' / 'scene0001_00.bin').read_bytes()
    (src / 'points' / 'scene0001_00.bin').write_bytes(raw[:-4])
    with pytest.raises(ValueError, match='scene0001_00.bin.*truncated'):
        scenes[1].load()


def test_files_layout(tmp_path):
    src = tmp_path / 'files'
    src.mkdir()
    rng = np.random.default_rng(0)
    xyz = rng.random((20, 3)) + 300.0
    rgb01 = rng.random((20, 3))
    np.save(src / 'a.npy', np.concatenate([xyz, rgb01], 1))
    np.save(src / 'b.npy', xyz.astype(np.float32))
    np.savez(src / 'c.npz', xyz=xyz, rgb=(rgb01 * 255).astype(np.uint8),
             label=np.arange(20) + 5)
    coord, faces = _grid_mesh()
    write_ply(src / 'd.ply', coord, faces=faces, label=np.arange(12),
              label_dtype='u1', binary=False)
    (src / 'notes.txt').write_text('ignored')
    assert detect_layout(src) == 'files'
    notes = []
    _, scenes = find_scenes(src, log=notes.append)
    assert [s.scene_id for s in scenes] == ['a', 'b', 'c', 'd']
    assert {s.split for s in scenes} == {'train'}
    assert any('all 4 scenes go to train' in n for n in notes)
    a, b, c, d = (s.load() for s in scenes)
    assert np.array_equal(a['coord'], xyz)
    assert np.array_equal(a['color'], np.rint(rgb01 * 255).astype(np.uint8))
    assert b['color'] is None and b['coord'].dtype == np.float64
    lab = np.arange(20) + 5
    assert np.array_equal(c['segment'], np.where(lab < 20, lab, -1))
    assert np.array_equal(c['color'], (rgb01 * 255).astype(np.uint8))
    assert d['faces'] is not None and d['segment'][11] == 11


def test_files_split_folders_and_bad_npy(tmp_path):
    src = tmp_path / 'files'
    (src / 'train').mkdir(parents=True)
    (src / 'val').mkdir()
    np.save(src / 'train' / 'a.npy', np.zeros((5, 3)))
    np.save(src / 'val' / 'b.npy', np.zeros((5, 2)))
    np.save(src / 'val' / 'c.npy', np.array([{}], dtype=object),
            allow_pickle=True)
    _, scenes = find_scenes(src)
    assert [(s.split, s.scene_id) for s in scenes] == [
        ('train', 'a'), ('val', 'b'), ('val', 'c')]
    with pytest.raises(ValueError, match=r'b\.npy.*\(N, 3\+\)'):
        scenes[1].load()
    with pytest.raises(ValueError, match='refusing to unpickle'):
        scenes[2].load()


def test_val_ratio_deterministic(tmp_path):
    src = tmp_path / 'files'
    src.mkdir()
    for i in range(10):
        np.save(src / f's{i}.npy', np.zeros((4, 3)))
    runs = [find_scenes(src, val_ratio=0.3, seed=1, log=lambda m: None)[1]
            for _ in range(2)]
    val = [s.scene_id for s in runs[0] if s.split == 'val']
    assert len(val) == 3
    assert val == [s.scene_id for s in runs[1] if s.split == 'val']
    other = find_scenes(src, val_ratio=0.3, seed=2, log=lambda m: None)[1]
    assert len([s for s in other if s.split == 'val']) == 3


def test_detect_layout_failures(tmp_path):
    with pytest.raises(ValueError, match='does not exist'):
        detect_layout(tmp_path / 'nope')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(ValueError, match='--layout'):
        detect_layout(tmp_path / 'empty')
    with pytest.raises(ValueError, match='unknown layout'):
        find_scenes(tmp_path / 'empty', layout='kitti')
    with pytest.raises(ValueError, match='no scenes'):
        find_scenes(tmp_path / 'empty', layout='pointcept')


def test_loaded_scene_is_picklable(tmp_path):
    # worker processes receive SceneSource objects by pickle
    import pickle
    src = tmp_path / 'pc'
    _write_pointcept(src, 'train', 'x')
    _, scenes = find_scenes(src)
    back = pickle.loads(pickle.dumps(scenes[0]))
    assert back.load()['coord'].shape == (40, 3)
    assert os.path.basename(back.path) == 'x'


def test_input_file_that_is_not_numpy_is_named_as_such(tmp_path):
    scene = tmp_path / 'src' / 'train' / 'scene0000_00'
    scene.mkdir(parents=True)
    (scene / 'coord.npy').symlink_to('/etc/passwd')
    _, scenes = find_scenes(tmp_path / 'src')
    with pytest.raises(ValueError) as e:
        scenes[0].load()
    msg = str(e.value)
    assert str(scene / 'coord.npy') in msg and 'is not a numpy file' in msg
    assert 'pickle' not in msg and '\n' not in msg


def test_ascii_ply_row_of_the_wrong_width_is_named_by_line(tmp_path):
    coord = np.arange(300.0).reshape(100, 3)
    p = tmp_path / 'a.ply'
    write_ply(p, coord, binary=False)
    lines = p.read_text().split('\n')
    row50 = lines.index('end_header') + 1 + 50  # 0-based index of row 50

    def edit(i, text):
        q = tmp_path / f'e{i}.ply'
        q.write_text('\n'.join(lines[:i] + [text] + lines[i + 1:]))
        return q

    # one value too many on one line: refused, not every later row shifted
    _assert_ply_error(edit(row50, lines[row50] + ' 7'),
                      f'line {row50 + 1}: 4 values, expected 3')
    _assert_ply_error(edit(row50, ' '.join(lines[row50].split()[:2])),
                      f'line {row50 + 1}: 2 values, expected 3')
    _assert_ply_error(edit(row50, '150.0 oops 152.0'),
                      f"line {row50 + 1}: value 'oops' is not a number")
    # a blank line is no row: the file reads as written
    assert np.array_equal(read_ply_points(edit(row50, '\n' + lines[row50]))
                          ['coord'], coord)
    short = tmp_path / 'short.ply'
    short.write_text('\n'.join(lines[:row50]) + '\n')
    _assert_ply_error(short, 'truncated', 'has 100 rows in the header',
                      'ends after 50 of them', f'line {row50}')
    longer = tmp_path / 'long.ply'
    longer.write_text('\n'.join(lines[:-1] + ['1 2 3', '']))
    _assert_ply_error(longer, f'line {len(lines)}: 1 line(s) of values '
                      'after the last element', '100 vertex')
    # a face whose count disagrees although the row width fits
    head = ('ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\n'
            'property float y\nproperty float z\nelement face 2\n'
            'property list uchar int vertex_indices\nend_header\n')
    f = tmp_path / 'face.ply'
    f.write_text(head + '0 0 0\n1 0 0\n1 1 0\n0 1 0\n3 0 1 2\n4 0 1 2\n')
    _assert_ply_error(f, 'line 15', 'different lengths')


# -------------------------------------------------------------- intensity

@pytest.mark.parametrize('layout,field', [('rgbi', 'scalar_intensity'),
                                          ('normal', 'intensity')])
def test_intensity_of_both_scan_layouts_is_read(tmp_path, layout, field):
    from scan_files import write_scan_ply
    from dbbd.datasets.readers import load_point_file
    p = tmp_path / f'{layout}.ply'
    a = write_scan_ply(p, layout, n=50, seed=3)
    header = p.read_bytes()[:600].decode('latin1')
    assert f'property float {field}\n' in header
    if layout == 'rgbi':  # the real files' double labels
        assert 'property double label\n' in header
    d = read_ply_points(p)
    assert d['intensity'].dtype == np.float32
    # at the file's own scale (0..1 here, 0..65535 there), unchanged
    assert np.array_equal(d['intensity'], a['intensity'])
    out = load_point_file(str(p))
    assert np.array_equal(out['intensity'], a['intensity'])
    assert np.array_equal(out['color'], a['color'])
    # the double / int labels keep their ids (0..14)
    assert np.array_equal(out['segment'], a['label'])
    # a field that is not read is named, not dropped silently
    assert out['ignored'] == (() if layout == 'rgbi' else
                              ('curvature', 'alpha'))
    if layout == 'normal':
        np.testing.assert_allclose(out['normal'], a['normal'])


@pytest.mark.parametrize('name', ['Intensity', 'scalar_Intensity',
                                  'INTENSITY', 'Scalar_Intensity'])
@pytest.mark.parametrize('binary', [True, False])
def test_intensity_property_names_in_any_case(tmp_path, name, binary):
    coord = np.arange(12.0).reshape(4, 3)
    value = np.array([0, 17, 255, 3], np.uint8)
    p = tmp_path / 'c.ply'
    write_ply(p, coord, binary=binary, extra={name: value})
    d = read_ply_points(p)
    assert d['intensity'].tolist() == [0, 17, 255, 3]
    assert d['intensity'].dtype == np.float32 and d['ignored'] == ()


def test_file_without_intensity_has_none(tmp_path):
    p = tmp_path / 'n.ply'
    write_ply(p, np.zeros((3, 3)), extra={'quality': np.ones(3, 'f4')})
    d = read_ply_points(p)
    assert d['intensity'] is None and d['ignored'] == ('quality', )


def test_intensity_of_npz_npy_and_pointcept_files(tmp_path):
    from dbbd.datasets.readers import load_point_file, load_pointcept_scene
    xyz = np.random.default_rng(0).random((6, 3))
    inten = np.array([0, 1000, 65535, 7, 8, 9], np.uint16)
    np.savez(tmp_path / 'a.npz', coord=xyz, intensity=inten,
             label=np.arange(6), instance=np.arange(6))
    d = load_point_file(str(tmp_path / 'a.npz'))
    assert d['intensity'].tolist() == inten.tolist()
    assert d['intensity'].dtype == np.float32
    assert d['ignored'] == ('instance', )
    np.save(tmp_path / 'b.npy', np.concatenate([xyz, xyz[:, :1]], 1))
    d = load_point_file(str(tmp_path / 'b.npy'))
    assert d['intensity'] is None and d['ignored'] == ('column 3', )
    scene = tmp_path / 'pc' / 'train' / 's'
    scene.mkdir(parents=True)
    np.save(scene / 'coord.npy', xyz.astype(np.float32))
    np.save(scene / 'intensity.npy', inten.reshape(6, 1))
    np.save(scene / 'instance.npy', np.arange(6))
    d = load_pointcept_scene(str(scene))
    assert d['intensity'].tolist() == inten.tolist()
    assert d['ignored'] == ('instance.npy', )


def test_nonfinite_or_misshapen_intensity_names_the_file(tmp_path):
    from dbbd.datasets.readers import load_point_file
    p = tmp_path / 'nan.ply'
    write_ply(p, np.zeros((4, 3)),
              extra={'intensity': np.array([0, np.nan, 1, 2], 'f4')})
    with pytest.raises(ValueError) as e:
        load_point_file(str(p))
    msg = str(e.value)
    assert str(p) in msg and '1 of 4 points' in msg and 'intensity' in msg
    assert '\n' not in msg
    np.savez(tmp_path / 'bad.npz', coord=np.zeros((4, 3)),
             intensity=np.zeros(3))
    with pytest.raises(ValueError, match=r'bad\.npz: intensity has shape'):
        load_point_file(str(tmp_path / 'bad.npz'))
