"""Prepared scene folders: atomic writes and validated reads.

The folder format is docs/data_format.md. :func:`save_scene` writes a whole
folder or nothing; :func:`load_scene` turns every way a folder can be wrong
(missing, truncated, hand-edited, written by a newer version, pickled) into a
one-line :class:`SceneFormatError` naming the file and the fix. Arrays are
read with ``allow_pickle=False``, so a crafted file never executes code.
"""
import json
import os
import re
import shutil

import numpy as np

from dbbd.utils.fs import fsync_dir
from .region_tree import RegionTree, check_tree

__all__ = ['FORMAT_VERSION', 'SceneFormatError', 'save_scene', 'load_scene',
           'is_prepared', 'list_prepared', 'read_meta',
           'recover_interrupted', 'numpy_read_problem']

FORMAT_VERSION = 1

_FIX = 're-run tools/create_data.py with --overwrite'
_TREE_FILES = {
    'point_region': 'tree_point_region.npy',
    'region_parent': 'tree_region_parent.npy',
    'region_center': 'tree_region_center.npy',
    'level_offset': 'tree_level_offset.npy',
}
# meta keys of the contract that only the caller knows; None when not given
_META_KEYS = ('source', 'layout', 'branching', 'max_depth',
              'min_points_to_split', 'seed', 'voxel_size')
# name fragments of the temporary / aside folders of an atomic write
_TMP_MARKERS = ('.tmp-', '.old-')


class SceneFormatError(ValueError):
    """A prepared scene folder is missing, corrupt or inconsistent."""


#: The largest span (metres, along any axis) of one scene. Scans of rooms,
#: buildings or streets span metres to a few hundred metres; a span beyond
#: this is an outlier point or coordinates in another unit, and stored as
#: float32 it would leave the other points indistinguishable and make
#: training losses non-finite.
MAX_SCENE_EXTENT = 1e4


def coordinate_outlier(coord):
    """None, or one line saying why ``coord`` (N, 3) spans more than
    :data:`MAX_SCENE_EXTENT`: the span, and the point farthest from the
    median point (its index and position)."""
    coord = np.asarray(coord)
    if not coord.size:
        return None
    lo, hi = coord.min(0).astype(np.float64), coord.max(0).astype(np.float64)
    span = hi - lo
    axis = int(np.argmax(span))
    if span[axis] <= MAX_SCENE_EXTENT:
        return None
    far = np.abs(coord.astype(np.float64) - np.median(coord, 0)).max(1)
    i = int(np.argmax(far))
    x, y, z = (float(v) for v in coord[i])
    return (f'the points span {span[axis]:.3g} m along {"xyz"[axis]} (a '
            f'scene may span at most {MAX_SCENE_EXTENT:g} m); point {i} at '
            f'({x:.6g}, {y:.6g}, {z:.6g}) lies {far[i]:.3g} m from the '
            'median point: remove that outlier, or convert the coordinates '
            'to metres')


def _one_line(msg):
    return ' '.join(str(msg).split())


def _fail(path, what, fix=_FIX):
    return SceneFormatError(_one_line(f'{path}: {what}; {fix}'))


def is_prepared(scene_dir):
    """True when ``scene_dir`` holds a finished scene (``meta.json``, which
    is written last, exists)."""
    return os.path.isfile(os.path.join(os.fspath(scene_dir), 'meta.json'))


def list_prepared(split_dir):
    """Sorted scene folders of ``split_dir`` (e.g. ``OUT/train``) that are
    prepared, skipping the temporary folders of unfinished writes."""
    split_dir = os.fspath(split_dir)
    if not os.path.isdir(split_dir):
        return []
    return [os.path.join(split_dir, d) for d in sorted(os.listdir(split_dir))
            if not any(m in d for m in _TMP_MARKERS)
            and is_prepared(os.path.join(split_dir, d))]


_TMP_RE = re.compile(r'^(?P<scene>.+)\.(?P<kind>tmp|old)-(?P<pid>\d+)$')


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but not ours, or cannot tell: leave it alone
    return True


def recover_interrupted(split_dir):
    """Clean up after writers of ``split_dir`` that died mid-write.

    A ``<scene>.tmp-<pid>`` folder of a dead process is removed (its scene
    was never renamed into place). A ``<scene>.old-<pid>`` folder of a dead
    process is the previous version of a scene being overwritten: it is
    moved back when the new one never arrived, removed otherwise. Folders of
    live processes are left alone.

    Returns:
        list of the folder names handled.
    """
    split_dir = os.fspath(split_dir)
    if not os.path.isdir(split_dir):
        return []
    done = []
    for name in sorted(os.listdir(split_dir)):
        m = _TMP_RE.match(name)
        if not m or _pid_alive(int(m['pid'])):
            continue
        path = os.path.join(split_dir, name)
        scene = os.path.join(split_dir, m['scene'])
        if m['kind'] == 'old' and not os.path.exists(scene):
            os.rename(path, scene)
        else:
            shutil.rmtree(path, ignore_errors=True)
        done.append(name)
    return done


def _save_npy(path, arr):
    with open(path, 'wb') as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())



def save_scene(scene_dir, coord, normal, tree, color=None, segment=None,
               meta=None, origin=None, overwrite=False, intensity=None):
    """Write a prepared scene folder atomically.

    The files are written into ``<scene_dir>.tmp-<pid>`` (each flushed to
    disk, ``meta.json`` last) and the folder is renamed into place; with
    ``overwrite`` an existing folder is moved aside first and removed after.
    On any failure no partial ``scene_dir`` exists (an overwritten one is
    restored).

    Args:
        scene_dir: ``OUT/<split>/<scene_id>``.
        coord (N, 3): coordinates in metres, absolute; ``coord - origin`` is
            stored as float32 (computed in float64).
        normal (N, 3): unit normals.
        tree: :class:`RegionTree` over the points in their stored order.
        color (N, 3) uint8 or None; segment (N,) int or None (ScanNet-20
            ids, -1 unlabelled).
        meta: extra ``meta.json`` fields (``source``, ``layout``,
            ``branching``, ...); the computed fields (``format_version``,
            ``num_points``, ``regions_per_level``, ``depth``, ``has_color``,
            ``has_segment``, ``has_intensity``, ``origin``, ``scene_id`` by
            default) are filled in.
        origin (3,) or None: offset subtracted from ``coord`` (zeros when
            None).
        overwrite: replace an existing folder instead of raising
            ``FileExistsError``.
        intensity (N,) or None: per-point intensity at the source's own
            scale, stored as float32 ``intensity.npy`` (normalised at
            training time by ``NormalizeIntensity``); finite values only.

    Returns:
        the meta dict written.
    """
    scene_dir = os.path.abspath(os.fspath(scene_dir)).rstrip(os.sep)
    if os.path.exists(scene_dir) and not overwrite:
        raise FileExistsError(f'{scene_dir} exists; pass overwrite=True (or '
                              '--overwrite) to replace it')
    origin = (np.zeros(3) if origin is None
              else np.asarray(origin, dtype=np.float64).reshape(3))
    xyz = np.asarray(coord, dtype=np.float64)
    n = xyz.shape[0]
    if xyz.ndim != 2 or xyz.shape[1] != 3 or n == 0:
        raise ValueError(f'{scene_dir}: coord must be (N, 3) with N > 0, '
                         f'got {xyz.shape}')
    if not np.isfinite(xyz).all():
        raise ValueError(f'{scene_dir}: coord has NaN/Inf values')
    arrays = {'coord.npy': (xyz - origin).astype(np.float32),
              'normal.npy': np.asarray(normal, dtype=np.float32)}
    if color is not None:
        arrays['color.npy'] = np.asarray(color, dtype=np.uint8)
    if segment is not None:
        arrays['segment.npy'] = np.asarray(segment).astype(np.int16)
    if intensity is not None:
        arrays['intensity.npy'] = np.asarray(intensity, dtype=np.float32)
    for name, shape in (('normal.npy', (n, 3)), ('color.npy', (n, 3)),
                        ('segment.npy', (n,)), ('intensity.npy', (n,))):
        if name in arrays and arrays[name].shape != shape:
            raise ValueError(f'{scene_dir}: {name[:-4]} has shape '
                             f'{arrays[name].shape}, expected {shape}')
    if intensity is not None and not np.isfinite(
            arrays['intensity.npy']).all():
        raise ValueError(f'{scene_dir}: intensity has NaN/Inf values')
    check_tree(tree, n, name=f'{scene_dir}: tree')
    arrays.update({
        _TREE_FILES['point_region']: np.asarray(tree.point_region, np.int32),
        _TREE_FILES['region_parent']: np.asarray(tree.region_parent,
                                                 np.int32),
        _TREE_FILES['region_center']: np.asarray(tree.region_center,
                                                 np.int32),
        _TREE_FILES['level_offset']: np.asarray(tree.level_offset, np.int64),
    })
    rpl = np.diff(np.asarray(tree.level_offset)).astype(int).tolist()
    full = {k: None for k in _META_KEYS}
    full['scene_id'] = os.path.basename(scene_dir)
    full.update(meta or {})
    full.update(format_version=FORMAT_VERSION, num_points=int(n),
                regions_per_level=rpl, depth=len(rpl) - 1,
                has_color=color is not None,
                has_segment=segment is not None,
                has_intensity=intensity is not None,
                origin=[float(v) for v in origin])
    text = json.dumps(full, indent=1, sort_keys=True, default=_json_default)

    parent = os.path.dirname(scene_dir)
    os.makedirs(parent, exist_ok=True)
    tmp = f'{scene_dir}.tmp-{os.getpid()}'
    old = f'{scene_dir}.old-{os.getpid()}'
    moved_aside = False
    try:
        if os.path.exists(tmp):  # left by a crash of an earlier run
            shutil.rmtree(tmp)
        os.makedirs(tmp)
        for name, arr in arrays.items():
            _save_npy(os.path.join(tmp, name), arr)
        with open(os.path.join(tmp, 'meta.json'), 'w') as f:
            f.write(text + '\n')
            f.flush()
            os.fsync(f.fileno())
        if os.path.exists(scene_dir):
            os.rename(scene_dir, old)
            moved_aside = True
        os.rename(tmp, scene_dir)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if moved_aside and not os.path.exists(scene_dir):
            os.rename(old, scene_dir)
            moved_aside = False
        raise
    if moved_aside:
        shutil.rmtree(old, ignore_errors=True)
    return full


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def numpy_read_problem(path, exc):
    """What is wrong with a file that ``np.load(path, allow_pickle=False)``
    refused with ``exc``, in a few words (no path).

    numpy takes any file without the ``.npy`` / ``.npz`` signature for a
    pickle and says so; the first bytes tell a real pickle (refused, never
    unpickled) from a file that is simply something else.
    """
    try:
        with open(path, 'rb') as f:
            head = f.read(8)
    except OSError as e:
        return f'cannot be read ({e.strerror or e})'
    if not head:
        return 'is empty (0 bytes)'
    if head.startswith(b'\x93NUMPY') or head.startswith(b'PK\x03\x04'):
        msg = _one_line(exc)
        if 'pickle' in msg.lower() or 'object' in msg.lower():
            return ('holds an object array (pickled Python objects); '
                    'refusing to unpickle')
        return f'corrupt or truncated ({msg})'
    if head[:1] == b'\x80':  # pickle protocol 2 and later
        return 'holds a pickle, not a numpy array; refusing to unpickle'
    return (f'is not a numpy file (it starts with {head!r}, not the .npy '
            'signature)')


def _own_file(scene_dir, name):
    """``scene_dir/name``, refused when it is a link that leads out of the
    scene folder (a prepared scene holds its own files)."""
    path = os.path.join(scene_dir, name)
    if os.path.islink(path):
        target = os.path.realpath(path)
        root = os.path.realpath(scene_dir)
        if os.path.commonpath([target, root]) != root:
            raise _fail(path, f'is a symbolic link to {target}, outside the '
                        'scene folder (prepared scenes hold their own '
                        'files)')
    return path


def _describe(value):
    return f'{value!r} (a {type(value).__name__})'


# meta.json fields this code reads, and the JSON type each must have
_META_TYPES = {'num_points': 'count', 'depth': 'count',
               'regions_per_level': 'counts', 'has_color': 'bool',
               'has_segment': 'bool', 'has_intensity': 'bool',
               'origin': 'xyz', 'scene_id': 'str'}


def _check_meta_types(path, meta):
    for key, kind in _META_TYPES.items():
        if key not in meta:
            continue
        v = meta[key]
        is_int = isinstance(v, int) and not isinstance(v, bool)
        if kind == 'count':
            ok, want = is_int and v >= 0, 'an integer >= 0'
        elif kind == 'counts':
            ok = isinstance(v, list) and all(
                isinstance(x, int) and not isinstance(x, bool) and x >= 0
                for x in v)
            want = 'a list of integers >= 0'
        elif kind == 'bool':
            ok, want = isinstance(v, bool), 'true or false'
        elif kind == 'xyz':
            ok = isinstance(v, list) and len(v) == 3 and all(
                isinstance(x, (int, float)) and not isinstance(x, bool)
                and np.isfinite(x) for x in v)
            want = 'a list of 3 finite numbers'
        else:
            ok, want = isinstance(v, str), 'a string'
        if not ok:
            raise _fail(path, f'{key} is {_describe(v)}, expected {want}')


def read_meta(scene_dir):
    """``meta.json`` of a scene as a dict, validated (format version, the
    types of the fields this code reads)."""
    scene_dir = os.fspath(scene_dir)
    path = _own_file(scene_dir, 'meta.json')
    if not os.path.isfile(path):
        raise _fail(path, 'missing (the scene was never prepared, or its '
                    'preparation did not finish)',
                    're-run tools/create_data.py')
    try:
        with open(path) as f:
            meta = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _fail(path, f'unreadable ({e})') from None
    if not isinstance(meta, dict):
        raise _fail(path, f'holds a {type(meta).__name__}, expected a JSON '
                    'object')
    ver = meta.get('format_version')
    if not isinstance(ver, int) or isinstance(ver, bool):
        raise _fail(path, f'format_version is {ver!r}, expected an integer')
    if ver > FORMAT_VERSION:
        raise _fail(path, f'format_version {ver} is newer than this DBBD '
                    f'supports ({FORMAT_VERSION})',
                    'upgrade dbbd, or re-run tools/create_data.py with '
                    '--overwrite using this version')
    _check_meta_types(path, meta)
    return meta


def _load_npy(scene_dir, name, mmap, required=True):
    path = _own_file(scene_dir, name)
    if not os.path.isfile(path):
        if not required:
            return None
        raise _fail(path, 'missing')
    try:
        return np.load(path, allow_pickle=False,
                       mmap_mode='r' if mmap else None)
    except (ValueError, OSError, EOFError, TypeError) as e:
        raise _fail(path, numpy_read_problem(path, e)) from None


def _expect(scene_dir, name, arr, kinds, shape, what):
    """Check dtype kind and shape (``None`` in ``shape`` matches any)."""
    path = os.path.join(scene_dir, name)
    if arr.dtype.kind not in kinds:
        raise _fail(path, f'has dtype {arr.dtype}, expected {what}')
    if arr.ndim != len(shape) or any(
            s is not None and a != s for a, s in zip(arr.shape, shape)):
        want = '(' + ', '.join('*' if s is None else str(s)
                               for s in shape) + (',)' if len(shape) == 1
                                                  else ')')
        raise _fail(path, f'has shape {arr.shape}, expected {want}')


def load_scene(scene_dir, mmap=True, check=True):
    """Load a prepared scene folder.

    Args:
        scene_dir: ``OUT/<split>/<scene_id>``.
        mmap: memory-map the arrays (read-only) instead of reading them.
        check: also run the O(N) value checks (finite coordinates, tree
            consistency); the structural checks (files, dtypes, shapes,
            lengths, meta) always run.

    Returns:
        dict(coord (N, 3) float32, normal (N, 3) float32, color (N, 3) uint8
        or None, segment (N,) int16 or None, intensity (N,) float32 or None
        (the source's scale), tree=RegionTree, meta=dict, scene_id=str).

    Raises:
        SceneFormatError: one line naming the file, the problem and the fix.
    """
    scene_dir = os.fspath(scene_dir)
    if not os.path.isdir(scene_dir):
        raise _fail(scene_dir, 'scene folder does not exist',
                    'run tools/create_data.py (or check the data root)')
    meta = read_meta(scene_dir)
    coord = _load_npy(scene_dir, 'coord.npy', mmap)
    _expect(scene_dir, 'coord.npy', coord, 'f', (None, 3), 'float32')
    n = coord.shape[0]
    if n == 0:
        raise _fail(os.path.join(scene_dir, 'coord.npy'),
                    'empty scene (0 points)', 'remove the scene or ' + _FIX)
    normal = _load_npy(scene_dir, 'normal.npy', mmap)
    _expect(scene_dir, 'normal.npy', normal, 'f', (n, 3), 'float32')
    color = _load_npy(scene_dir, 'color.npy', mmap, required=False)
    if color is not None:
        _expect(scene_dir, 'color.npy', color, 'u', (n, 3), 'uint8')
    segment = _load_npy(scene_dir, 'segment.npy', mmap, required=False)
    if segment is not None:
        _expect(scene_dir, 'segment.npy', segment, 'i', (n,), 'int16')
    intensity = _load_npy(scene_dir, 'intensity.npy', mmap, required=False)
    if intensity is not None:
        _expect(scene_dir, 'intensity.npy', intensity, 'f', (n,), 'float32')
    for key, name in (('has_color', 'color.npy'),
                      ('has_segment', 'segment.npy'),
                      ('has_intensity', 'intensity.npy')):
        if meta.get(key) and not os.path.isfile(
                os.path.join(scene_dir, name)):
            raise _fail(os.path.join(scene_dir, name),
                        f'missing although meta.json says {key}=true')
    if meta.get('num_points', n) != n:
        raise _fail(os.path.join(scene_dir, 'coord.npy'),
                    f'has {n} points but meta.json says num_points='
                    f'{meta["num_points"]}')
    t = {k: _load_npy(scene_dir, f, mmap) for k, f in _TREE_FILES.items()}
    _expect(scene_dir, _TREE_FILES['point_region'], t['point_region'], 'i',
            (None, n), 'int32')
    levels = t['point_region'].shape[0]
    if levels == 0:
        raise _fail(os.path.join(scene_dir, _TREE_FILES['point_region']),
                    'tree has no levels')
    _expect(scene_dir, _TREE_FILES['level_offset'], t['level_offset'], 'i',
            (levels + 1,), 'int64')
    r = int(t['level_offset'][-1]) if levels else 0
    for k in ('region_parent', 'region_center'):
        _expect(scene_dir, _TREE_FILES[k], t[k], 'i', (r,), 'int32')
    tree = RegionTree(**t)
    if check:
        if not np.isfinite(coord).all():
            bad = int((~np.isfinite(coord)).any(1).sum())
            raise _fail(os.path.join(scene_dir, 'coord.npy'),
                        f'{bad} points have NaN/Inf coordinates')
        outlier = coordinate_outlier(coord)
        if outlier:
            raise _fail(os.path.join(scene_dir, 'coord.npy'), outlier)
        if not np.isfinite(normal).all():
            raise _fail(os.path.join(scene_dir, 'normal.npy'),
                        'has NaN/Inf values')
        if intensity is not None and not np.isfinite(intensity).all():
            raise _fail(os.path.join(scene_dir, 'intensity.npy'),
                        'has NaN/Inf values')
        if segment is not None and segment.min() < -1:
            raise _fail(os.path.join(scene_dir, 'segment.npy'),
                        f'has id {segment.min()} < -1 (-1 is the only '
                        'negative id: unlabelled)')
        try:
            check_tree(tree, n, name='tree')
        except ValueError as e:
            raise _fail(os.path.join(scene_dir, 'tree_*.npy'),
                        str(e)) from None
    return dict(coord=coord, normal=normal, color=color, segment=segment,
                intensity=intensity, tree=tree, meta=meta,
                scene_id=str(meta.get('scene_id')
                             or os.path.basename(scene_dir.rstrip(os.sep))))
