"""Input layouts: find the scenes of a source folder and load them.

Four layouts are read (``detect_layout`` tells them apart):

``scannet``  raw ScanNet v2: ``SRC/scans/<scene>/<scene>_vh_clean_2.ply``
             (coloured mesh) and ``<scene>_vh_clean_2.labels.ply`` (NYU40
             ids in ``label``); also ``SRC/scans_test/`` (split ``test``), or
             ``SRC`` being the ``scans`` folder itself.
``pointcept`` ``SRC/<split>/<scene>/coord.npy, color.npy, normal.npy
             [, segment20.npy]`` (or ``SRC/<scene>/...`` without splits).
``mmdet3d``  ``SRC/points/<scene>.bin`` (float32 rows x y z r g b) and
             ``SRC/semantic_mask/<scene>.bin`` (int64 per point).
``files``    ``SRC[/<split>]/<name>.ply|.npy|.npz`` point clouds.

Splits come from the layout (folder names), from split lists
(``scannetv2_{train,val,test}.txt``; ``--splits DIR``, or
``SRC/meta_data/`` for mmdet3d), or, failing both, every scene goes to
``train`` unless ``val_ratio`` picks a deterministic validation subset.

A :class:`SceneSource` carries a picklable loader, so scenes load in worker
processes; every loader returns ``coord (N, 3) float64``, ``color (N, 3)
uint8`` or None, ``normal (N, 3) float32`` or None, ``intensity (N,)
float32`` or None (at the source's own scale: 0..1, 0..255, 0..65535, ...),
``segment (N,) int16`` (ScanNet-20 ids, or a :class:`LabelMap`'s ids for
generic files; -1 unlabelled) or None, ``faces (F, 3) int64`` or None and
``ignored`` (tuple of str: the fields the source holds that are not read,
e.g. a PLY's ``curvature`` and ``alpha``; the preparation summary names
them), and raises a one-line ``ValueError`` naming the file on bad input.

Intensity is read from a PLY property or ``.npz`` key named ``intensity``
or ``scalar_intensity`` (any case: ``Intensity``, ``scalar_Intensity``) and
from a Pointcept scene's ``intensity.npy``.
"""
import contextlib
import functools
import glob
import json
import os
from dataclasses import dataclass
from typing import Callable, Optional, Tuple

import numpy as np

from .ply import color_to_uint8, find_intensity, read_ply_points
from .scene_io import numpy_read_problem

__all__ = [
    'SCANNET20_CLASSES', 'SCANNET20_NYU40_IDS', 'LAYOUTS', 'SceneSource',
    'nyu40_to_scannet20', 'clean_scannet20', 'detect_layout',
    'read_split_lists', 'find_scenes', 'load_scannet_scene',
    'load_pointcept_scene', 'load_mmdet3d_scene', 'load_point_file',
    'LabelMap', 'parse_label_map'
]

SCANNET20_CLASSES = (
    'wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table', 'door',
    'window', 'bookshelf', 'picture', 'counter', 'desk', 'curtain',
    'refrigerator', 'shower curtain', 'toilet', 'sink', 'bathtub',
    'otherfurniture')
# NYU40 id of each ScanNet-20 class, in class order (the benchmark's
# VALID_CLASS_IDS).
SCANNET20_NYU40_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 14, 16, 24,
                       28, 33, 34, 36, 39)
LAYOUTS = ('scannet', 'pointcept', 'mmdet3d', 'files')
SPLIT_FILES = {s: f'scannetv2_{s}.txt' for s in ('train', 'val', 'test')}
POINT_FILE_EXTS = ('.ply', '.npy', '.npz')

_NYU40_LUT = np.full(41, -1, dtype=np.int16)
_NYU40_LUT[list(SCANNET20_NYU40_IDS)] = np.arange(20, dtype=np.int16)


def nyu40_to_scannet20(labels):
    """NYU40 ids (N,) -> ScanNet-20 ids (N,) int16; other ids -> -1."""
    lab = np.asarray(labels).astype(np.int64)
    ok = (lab >= 0) & (lab <= 40)
    return np.where(ok, _NYU40_LUT[np.where(ok, lab, 0)], -1).astype(
        np.int16)


def clean_scannet20(labels):
    """ScanNet-20 ids (N,) -> int16 with everything outside 0..19 (255,
    -1, 20 = mmdet3d's ignore) set to -1."""
    lab = np.asarray(labels).astype(np.int64)
    return np.where((lab >= 0) & (lab < 20), lab, -1).astype(np.int16)


@dataclass(frozen=True)
class LabelMap:
    """How the ``label`` / ``segment`` ids of generic point files become the
    stored ids (``--label-map``, ``--ignore-label``).

    Attributes:
        pairs: ``((src, dst), ...)``: source id -> stored id (-1:
            unlabelled); every id not listed becomes -1. Empty: the ids are
            taken as ScanNet-20 ids (0..19 kept, anything else -1).
        ignore: source ids that mean "unlabelled" (-1), whatever ``pairs``
            says; -1 always does.
    """
    pairs: Tuple[Tuple[int, int], ...] = ()
    ignore: Tuple[int, ...] = ()

    def describe(self):
        """JSON-ready form (``meta.json``'s ``labels``; None by default)."""
        if not self.pairs and not self.ignore:
            return None
        return dict(map={str(k): v for k, v in self.pairs} or None,
                    ignore=sorted(self.ignore))

    def apply(self, labels):
        """labels (N,) ints -> (segment (N,) int16, unmapped {id: points}):
        the ids that became -1 without being listed as unlabelled."""
        lab = np.asarray(labels).reshape(-1).astype(np.int64)
        ids, inv, counts = np.unique(lab, return_inverse=True,
                                     return_counts=True)
        # one entry per distinct id: a loop over ids, never over points
        table = dict(self.pairs)
        dst = np.full(ids.shape, -1, dtype=np.int64)
        unmapped = {}
        for i, (v, c) in enumerate(zip(ids.tolist(), counts.tolist())):
            if v == -1 or v in self.ignore:
                continue
            if table:
                out = table.get(v)
            else:
                out = v if 0 <= v < len(SCANNET20_CLASSES) else None
            if out is None:
                unmapped[v] = c
            else:
                dst[i] = out
        return dst[inv.reshape(-1)].astype(np.int16), unmapped


def _label_id(text, what, lo, hi):
    try:
        v = int(str(text).strip())
    except ValueError:
        v = None
    if v is None or not lo <= v <= hi:
        raise ValueError(f'--label-map: {what} {text!r} is not an integer in '
                         f'{lo}..{hi}')
    return v


def parse_label_map(spec):
    """``--label-map``: a JSON file holding ``{"src": dst, ...}``, or
    ``src:dst`` pairs separated by commas (``"1:0,2:1,7:-1"``).

    Returns:
        ``((src, dst), ...)`` sorted by ``src``; ``dst`` in -1..32767 (-1:
        unlabelled).

    Raises:
        ValueError: one line naming the file or the pair at fault.
    """
    spec = str(spec)
    if spec.lower().endswith('.json') or os.path.isfile(spec):
        try:
            with open(spec) as f:
                raw = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f'--label-map: cannot read {spec} ({e})') \
                from None
        if not isinstance(raw, dict) or not raw:
            raise ValueError(f'--label-map: {spec} must hold a non-empty '
                             'JSON object {"source id": stored id, ...}')
        items = list(raw.items())
        for k, v in items:
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f'--label-map: {spec}: the value of {k!r} '
                                 f'is {v!r}; expected an integer id')
    else:
        items = []
        for pair in spec.replace(' ', ',').split(','):
            if not pair:
                continue
            if pair.count(':') != 1:
                raise ValueError(f'--label-map: {pair!r} is not a SRC:DST '
                                 'pair (write e.g. 1:0,2:1, or give a JSON '
                                 'file)')
            items.append(tuple(pair.split(':')))
        if not items:
            raise ValueError('--label-map: no SRC:DST pair given')
    pairs = {}
    for k, v in items:
        src = _label_id(k, 'source id', -2 ** 62, 2 ** 62)
        if src in pairs:
            raise ValueError(f'--label-map: source id {src} is mapped twice')
        pairs[src] = _label_id(v, f'stored id of {src}:', -1, 32767)
    return tuple(sorted(pairs.items()))


@dataclass(frozen=True)
class SceneSource:
    """One input scene.

    Attributes:
        scene_id: output folder name.
        split: ``train`` / ``val`` / ``test`` (or a layout's folder name).
        path: main source file or folder (named in messages).
        layout: one of :data:`LAYOUTS`.
        loader: picklable callable returning the loader dict (see module
            docstring).
    """
    scene_id: str
    split: Optional[str]
    path: str
    layout: str
    loader: Callable

    def load(self):
        return self.loader()


# ---------------------------------------------------------------- loaders

def _check_points(path, coord, color=None, normal=None, segment=None,
                  faces=None, intensity=None, ignored=()):
    """Validate shapes and finiteness; return the loader dict."""
    coord = np.asarray(coord, dtype=np.float64)
    if coord.ndim != 2 or coord.shape[1] != 3:
        raise ValueError(f'{path}: coordinates have shape {coord.shape}, '
                         'expected (N, 3)')
    n = coord.shape[0]
    if n == 0:
        raise ValueError(f'{path}: empty point cloud (0 points)')
    bad = ~np.isfinite(coord).all(1)
    if bad.any():
        raise ValueError(f'{path}: {int(bad.sum())} of {n} points have '
                         'NaN/Inf coordinates')
    if intensity is not None:
        intensity = np.asarray(intensity)
        if intensity.ndim == 2 and intensity.shape[1:] == (1,):
            intensity = intensity[:, 0]
        if intensity.dtype.kind not in 'fiub':
            raise ValueError(f'{path}: intensity has dtype {intensity.dtype}'
                             ', expected numbers')
    for name, a, shape in (('color', color, (n, 3)),
                           ('normal', normal, (n, 3)),
                           ('intensity', intensity, (n,)),
                           ('segment', segment, (n,))):
        if a is not None and a.shape != shape:
            raise ValueError(f'{path}: {name} has shape {a.shape}, expected '
                             f'{shape} (one per point)')
    if normal is not None:
        # NaN / zero normals are repaired (PCA) by the preparation
        normal = np.asarray(normal, dtype=np.float32)
    if intensity is not None:
        intensity = intensity.astype(np.float32)
        bad = ~np.isfinite(intensity)
        if bad.any():
            raise ValueError(f'{path}: {int(bad.sum())} of {n} points have '
                             'NaN/Inf intensity; fix or remove those points '
                             '(or the intensity field) in the source')
    return dict(coord=coord, color=color, normal=normal, segment=segment,
                faces=faces, intensity=intensity, ignored=tuple(ignored))


@contextlib.contextmanager
def _numpy_errors(path):
    """Turn numpy's read errors into one line naming ``path`` and what is
    wrong with it; a pickle is refused, never unpickled."""
    try:
        yield
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f'{path}: {numpy_read_problem(path, e)}') from None


def _npload(path, required=True):
    if not os.path.isfile(path):
        if required:
            raise ValueError(f'{path}: missing')
        return None
    with _numpy_errors(path):
        return np.load(path, allow_pickle=False)

def load_scannet_scene(ply_path, labels_path=None):
    """A raw ScanNet mesh: vertices, colours, faces, labels mapped from NYU40
    to ScanNet-20."""
    d = read_ply_points(ply_path)
    segment = None
    if labels_path is not None:
        lab = read_ply_points(labels_path)['label']
        if lab is None:
            raise ValueError(f'{labels_path}: no "label" vertex property')
        if lab.shape[0] != d['coord'].shape[0]:
            raise ValueError(f'{labels_path}: {lab.shape[0]} labels for '
                             f'{d["coord"].shape[0]} vertices of {ply_path}')
        segment = nyu40_to_scannet20(lab)
    return _check_points(ply_path, d['coord'], d['color'], d['normal'],
                         segment, d['faces'], d['intensity'], d['ignored'])


#: Files of a Pointcept scene folder that are read.
POINTCEPT_FILES = ('coord.npy', 'color.npy', 'normal.npy', 'segment20.npy',
                   'intensity.npy')


def load_pointcept_scene(scene_dir):
    """A Pointcept scene folder (``coord.npy`` ... ``segment20.npy``,
    optional ``intensity.npy`` (N,) or (N, 1)); other ``.npy`` files are
    listed in ``ignored``."""
    j = functools.partial(os.path.join, scene_dir)
    coord = _npload(j('coord.npy'))
    if coord.dtype.kind not in 'fiu':
        raise ValueError(f'{j("coord.npy")}: dtype {coord.dtype} is not '
                         'numeric')
    color = _npload(j('color.npy'), required=False)
    normal = _npload(j('normal.npy'), required=False)
    seg = _npload(j('segment20.npy'), required=False)
    intensity = _npload(j('intensity.npy'), required=False)
    ignored = sorted(f for f in os.listdir(scene_dir)
                     if f.endswith('.npy') and f not in POINTCEPT_FILES)
    if color is not None:
        if color.ndim != 2 or color.shape[1] < 3:
            raise ValueError(f'{j("color.npy")}: shape {color.shape}, '
                             'expected (N, 3)')
        color = color_to_uint8(color[:, :3])
    if seg is not None:
        seg = clean_scannet20(seg.reshape(-1))
    return _check_points(scene_dir, coord, color, normal, seg,
                         intensity=intensity, ignored=ignored)


def load_mmdet3d_scene(points_path, mask_path=None, label_ids='nyu40'):
    """An mmdetection3d scene: ``points/<scene>.bin`` (float32 x y z r g b)
    and optional ``semantic_mask/<scene>.bin`` (int64).

    Args:
        label_ids: what the mask holds. ``'nyu40'`` (what mmdet3d's
            converter writes: raw NYU40 ids, mapped to ScanNet-20 by its
            ``PointSegClassMapping`` at train time), or ``'scannet20'``
            (already 0..19, 20 = ignore).
    """
    raw = np.fromfile(points_path, dtype='<f4')
    if raw.size % 6:
        raise ValueError(f'{points_path}: {raw.size} float32 values is not '
                         'a whole number of 6-value rows (x y z r g b); '
                         'truncated?')
    pts = raw.reshape(-1, 6)
    seg = None
    if mask_path is not None:
        mask = np.fromfile(mask_path, dtype='<i8')
        if os.path.getsize(mask_path) % 8 or mask.shape[0] != pts.shape[0]:
            raise ValueError(f'{mask_path}: {os.path.getsize(mask_path)} '
                             f'bytes, expected {pts.shape[0]} int64 labels '
                             f'for the points of {points_path}')
        if label_ids == 'nyu40':
            seg = nyu40_to_scannet20(mask)
        elif label_ids == 'scannet20':
            seg = clean_scannet20(mask)
        else:
            raise ValueError(f'label_ids must be nyu40 or scannet20, got '
                             f'{label_ids!r}')
    return _check_points(points_path, pts[:, :3],
                         color_to_uint8(pts[:, 3:6]), None, seg)


def _labelled(path, out, labels, label_map):
    """Add ``segment`` and ``label_unmapped`` to a loader dict."""
    if labels is None:
        return out
    labels = np.asarray(labels)
    n = out['coord'].shape[0]
    if labels.shape != (n,):
        raise ValueError(f'{path}: labels have shape {labels.shape}, '
                         f'expected ({n},) (one per point)')
    if labels.dtype.kind not in 'iub' and not (
            labels.dtype.kind == 'f' and np.isfinite(labels).all()
            and np.array_equal(labels, np.round(labels))):
        raise ValueError(f'{path}: labels of dtype {labels.dtype} are not '
                         'integer ids')
    out['segment'], out['label_unmapped'] = (
        label_map or LabelMap()).apply(labels)
    return out


def load_point_file(path, label_map=None):
    """A point cloud file: ``.ply`` (``label`` property, optional
    ``intensity`` / ``scalar_intensity``), ``.npy`` ((N, 3+) array: x y z
    [r g b ...], further columns are not read and named in ``ignored``) or
    ``.npz`` (``coord``/``xyz``, optional ``color``/``rgb``, ``normal``,
    ``intensity`` / ``scalar_intensity``, ``segment``/``label``; other keys
    named in ``ignored``).

    Labels go through ``label_map`` (:class:`LabelMap`; default: ScanNet-20
    ids, anything outside 0..19 unlabelled); the loader dict also carries
    ``label_unmapped`` ({id: points} that became -1 unasked).
    """
    ext = os.path.splitext(path)[1].lower()
    if ext == '.ply':
        d = read_ply_points(path)
        out = _check_points(path, d['coord'], d['color'], d['normal'], None,
                            d['faces'], d['intensity'], d['ignored'])
        return _labelled(path, out, d['label'], label_map)
    if ext == '.npy':
        a = _npload(path)
        if a.ndim != 2 or a.shape[1] < 3 or a.dtype.kind not in 'fiu':
            raise ValueError(f'{path}: array of shape {a.shape} dtype '
                             f'{a.dtype}; expected numeric (N, 3+) with '
                             'columns x y z [r g b]')
        color = color_to_uint8(a[:, 3:6]) if a.shape[1] >= 6 else None
        first = 6 if color is not None else 3  # columns not read
        k = a.shape[1]
        ignored = () if k <= first else (
            (f'column {first}',) if k == first + 1 else
            (f'columns {first}..{k - 1}',))
        return _check_points(path, a[:, :3], color, ignored=ignored)
    if ext == '.npz':
        with _numpy_errors(path), np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        coord = d.get('coord', d.get('xyz'))
        if coord is None:
            raise ValueError(f'{path}: no "coord" or "xyz" array (has '
                             f'{", ".join(sorted(d)) or "none"})')
        color = d.get('color', d.get('rgb'))
        if color is not None:
            color = color_to_uint8(np.asarray(color)[:, :3])
        seg = d.get('segment', d.get('label'))
        name = find_intensity(d)
        read = {'coord' if 'coord' in d else 'xyz', 'normal', name,
                'segment' if 'segment' in d else 'label',
                'color' if 'color' in d else 'rgb'}
        out = _check_points(path, coord, color, d.get('normal'),
                            intensity=None if name is None else d[name],
                            ignored=[k for k in d if k not in read])
        return _labelled(path, out, None if seg is None else
                         np.asarray(seg).reshape(-1), label_map)
    raise ValueError(f'{path}: unsupported extension {ext!r} (use '
                     f'{", ".join(POINT_FILE_EXTS)})')


def _raise(message):
    raise ValueError(message)


# -------------------------------------------------------------- discovery

def _dirs(path):
    try:
        return sorted(d for d in os.listdir(path)
                      if os.path.isdir(os.path.join(path, d)))
    except OSError:
        return []


def _has_point_files(path):
    return any(os.path.splitext(f)[1].lower() in POINT_FILE_EXTS
               for f in os.listdir(path)
               if os.path.isfile(os.path.join(path, f)))


def detect_layout(src):
    """Name the layout of ``src`` (one of :data:`LAYOUTS`).

    Raises:
        ValueError: nothing recognisable under ``src``.
    """
    src = os.fspath(src)
    if not os.path.isdir(src):
        raise ValueError(f'{src}: source folder does not exist')
    if (os.path.isdir(os.path.join(src, 'scans'))
            or os.path.isdir(os.path.join(src, 'scans_test'))
            or glob.glob(os.path.join(src, '*', '*_vh_clean_2.ply'))):
        return 'scannet'
    if glob.glob(os.path.join(src, 'points', '*.bin')):
        return 'mmdet3d'
    if (glob.glob(os.path.join(src, '*', 'coord.npy'))
            or glob.glob(os.path.join(src, '*', '*', 'coord.npy'))):
        return 'pointcept'
    if _has_point_files(src) or any(
            _has_point_files(os.path.join(src, d)) for d in _dirs(src)):
        return 'files'
    raise ValueError(
        f'{src}: cannot detect the layout (expected scans/<scene>/'
        '<scene>_vh_clean_2.ply, <split>/<scene>/coord.npy, points/*.bin, or '
        '.ply/.npy/.npz files); pass --layout')


def read_split_lists(splits_dir):
    """``{split: [scene ids]}`` from ``scannetv2_{train,val,test}.txt``.

    Returns an empty dict when none of the files exists.
    """
    out = {}
    for split, name in SPLIT_FILES.items():
        path = os.path.join(os.fspath(splits_dir), name)
        if os.path.isfile(path):
            with open(path) as f:
                out[split] = [ln.strip() for ln in f if ln.strip()]
    return out


def _scannet_sources(src):
    roots = [(os.path.join(src, 'scans'), None),
             (os.path.join(src, 'scans_test'), 'test')]
    if not any(os.path.isdir(r) for r, _ in roots):
        roots = [(src, None)]  # SRC is the scans folder itself
    out = []
    for root, split in roots:
        for name in _dirs(root):
            ply = os.path.join(root, name, f'{name}_vh_clean_2.ply')
            lab = os.path.join(root, name, f'{name}_vh_clean_2.labels.ply')
            if not os.path.isfile(ply):
                loader = functools.partial(
                    _raise, f'{ply}: missing (incomplete ScanNet download?)')
            else:
                loader = functools.partial(
                    load_scannet_scene, ply,
                    lab if os.path.isfile(lab) else None)
            out.append(SceneSource(name, split, ply, 'scannet', loader))
    return out


def _pointcept_sources(src):
    out = []
    for d in _dirs(src):
        p = os.path.join(src, d)
        if os.path.isfile(os.path.join(p, 'coord.npy')):
            out.append(SceneSource(d, None, p, 'pointcept',
                                   functools.partial(load_pointcept_scene,
                                                     p)))
            continue
        for s in _dirs(p):
            q = os.path.join(p, s)
            if os.path.isfile(os.path.join(q, 'coord.npy')):
                out.append(SceneSource(s, d, q, 'pointcept',
                                       functools.partial(
                                           load_pointcept_scene, q)))
    return out


def _mmdet3d_sources(src, label_ids):
    out = []
    for path in sorted(glob.glob(os.path.join(src, 'points', '*.bin'))):
        name = os.path.splitext(os.path.basename(path))[0]
        mask = os.path.join(src, 'semantic_mask', f'{name}.bin')
        out.append(SceneSource(
            name, None, path, 'mmdet3d',
            functools.partial(load_mmdet3d_scene, path,
                              mask if os.path.isfile(mask) else None,
                              label_ids)))
    return out


def _files_sources(src, label_map=None):
    out, seen = [], set()
    groups = [(src, None)] + [(os.path.join(src, d), d) for d in _dirs(src)]
    for folder, split in groups:
        for f in sorted(os.listdir(folder)):
            path = os.path.join(folder, f)
            stem, ext = os.path.splitext(f)
            if ext.lower() not in POINT_FILE_EXTS or not os.path.isfile(path):
                continue
            key = (split, stem)
            loader = (functools.partial(
                _raise, f'{path}: another file of split {split or "?"} has '
                f'the scene id {stem!r}; rename one') if key in seen else
                functools.partial(load_point_file, path, label_map))
            seen.add(key)
            out.append(SceneSource(stem, split, path, 'files', loader))
    return out


def _assign_splits(sources, lists, val_ratio, seed, log):
    """Give every source a split (see module docstring)."""
    out, unlisted = [], []
    if lists:
        where = {sid: s for s, ids in lists.items() for sid in ids}
        for src in sources:
            split = where.get(src.scene_id, src.split)
            if split is None:
                unlisted.append(src.scene_id)
            else:
                out.append(_with_split(src, split))
        if unlisted:
            log(f'{len(unlisted)} scenes are in no split list and are '
                f'skipped (e.g. {unlisted[0]})')
        return out
    free = [s for s in sources if s.split is None]
    if free and val_ratio:
        if not 0 < val_ratio < 1:
            raise ValueError(f'val_ratio must be in (0, 1), got {val_ratio}')
        ids = sorted(s.scene_id for s in free)
        n_val = min(len(ids) - 1, max(1, int(round(val_ratio * len(ids)))))
        perm = np.random.default_rng(seed).permutation(len(ids))
        val = {ids[i] for i in perm[:n_val]}
        log(f'no split lists: {n_val} of {len(ids)} scenes go to val '
            f'(val_ratio={val_ratio}, seed={seed}), the rest to train')
    elif free:
        val = set()
        log(f'no split lists: all {len(free)} scenes go to train (pass '
            '--splits DIR or --val-ratio R for a validation split)')
    for s in sources:
        if s.split is None:
            s = _with_split(s, 'val' if s.scene_id in val else 'train')
        out.append(s)
    return out


def _with_split(src, split):
    return SceneSource(src.scene_id, split, src.path, src.layout, src.loader)


def find_scenes(src, layout='auto', splits=None, val_ratio=None, seed=0,
                log=print, mmdet3d_label_ids='nyu40', label_map=None):
    """List the scenes of a source folder.

    Args:
        src: source folder.
        layout: ``'auto'`` or one of :data:`LAYOUTS`.
        splits: folder with ``scannetv2_{train,val,test}.txt`` (optional;
            mmdet3d falls back to ``SRC/meta_data``). Listed scenes take the
            listed split; a scene listed nowhere keeps the split its layout
            gives it (e.g. ``scans_test``) or is skipped.
        val_ratio: without split information, send this fraction of scenes
            (seeded, deterministic) to ``val``.
        log: callable for the one-line notes.
        mmdet3d_label_ids: see :func:`load_mmdet3d_scene`.
        label_map: :class:`LabelMap` of the ``files`` layout (other layouts
            refuse one: their ids are NYU40 or ScanNet-20 by definition).

    Returns:
        (layout, [SceneSource]) sorted by split and scene id.
    """
    src = os.fspath(src)
    if layout == 'auto':
        layout = detect_layout(src)
    elif layout not in LAYOUTS:
        raise ValueError(f'unknown layout {layout!r}; use auto or one of '
                         f'{", ".join(LAYOUTS)}')
    if not os.path.isdir(src):
        raise ValueError(f'{src}: source folder does not exist')
    if label_map is not None and label_map.describe() is not None \
            and layout != 'files':
        raise ValueError(f'--label-map / --ignore-label apply to generic '
                         f'point files (--layout files); {src} is read as '
                         f'layout {layout!r}, whose labels are mapped from '
                         'NYU40 or taken as ScanNet-20 ids')
    if layout == 'scannet':
        sources = _scannet_sources(src)
    elif layout == 'pointcept':
        sources = _pointcept_sources(src)
    elif layout == 'mmdet3d':
        sources = _mmdet3d_sources(src, mmdet3d_label_ids)
        if splits is None and read_split_lists(
                os.path.join(src, 'meta_data')):
            splits = os.path.join(src, 'meta_data')
    else:
        sources = _files_sources(src, label_map)
    if not sources:
        raise ValueError(f'{src}: no scenes found for layout {layout!r}')
    lists = {}
    if splits is not None:
        if not os.path.isdir(splits):
            raise ValueError(f'{splits}: split folder does not exist')
        lists = read_split_lists(splits)
        if not lists:
            raise ValueError(f'{splits}: none of '
                             f'{", ".join(SPLIT_FILES.values())} found')
    sources = _assign_splits(sources, lists, val_ratio, seed, log)
    return layout, sorted(sources, key=lambda s: (s.split, s.scene_id))
