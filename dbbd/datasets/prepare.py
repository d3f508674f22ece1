"""Offline preparation: input scenes -> prepared scene folders.

Per scene: read -> (optional) voxel subsample -> normals -> region tree ->
reorder every per-point array by the tree's depth-first order -> atomic
:func:`scene_io.save_scene` into ``OUT/<split>/<scene_id>/``.

:func:`prepare_dataset` runs scenes in worker processes (spawn-safe
top-level functions), skips scenes already prepared, isolates failures (a
bad file stops its scene only) and returns a summary; ``tools/create_data.py``
is a thin command line over it, and training code may call it in-process.
"""
import multiprocessing as mp
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from .normals import compute_normals, mesh_vertex_normals
from .readers import LabelMap, find_scenes, parse_label_map
from .region_tree import build_region_tree
from .scene_io import (coordinate_outlier, is_prepared, read_meta,
                       recover_interrupted, save_scene)
from .voxel import voxel_subsample

__all__ = ['prepare_scene', 'prepare_dataset', 'format_summary',
           'check_cloud', 'DegenerateSceneError', 'TREE_PARAMS']

# meta.json fields that decide a prepared scene's content: a skipped scene
# whose values differ is reported as stale
TREE_PARAMS = ('branching', 'max_depth', 'min_points_to_split', 'seed',
               'labels',
               'voxel_size')


# a cloud whose second (third) principal spread is below this fraction of
# the first is a line (a plane) to numerical precision
FLAT_RATIO = 1e-3
# warn when at least this fraction of the points repeat another one exactly
DUPLICATE_RATIO = 0.1
# warn when the whole cloud fits in a cube of this edge (metres): a few
# voxels of SpUNet's 2 cm grid, so coordinates in another unit, most likely
SMALL_EXTENT = 0.1
# the voxel size the small-extent warning counts voxels at (SpUNet's)
WARN_VOXEL = 0.02


class DegenerateSceneError(ValueError):
    """A cloud that cannot be trained on (one point, or too few distinct
    points for a single split of the region tree)."""


def _one_line(msg):
    return ' '.join(str(msg).split())


def check_cloud(path, xyz, min_points_to_split):
    """Refuse a cloud that cannot be trained on; name what is suspicious.

    Args:
        path: the source, named in the messages.
        xyz (N, 3) float64: the points as they will be stored (after
            subsampling, minus the origin); distinct means distinct in the
            stored float32.
        min_points_to_split: the tree's parameter (a region with fewer
            points is a leaf).

    Returns:
        list of one-line warnings: many exact duplicates, a cloud that fits
        in a 10 cm cube (another unit than metres?), all points on a line
        (PCA normals undefined) or in a plane.

    Raises:
        DegenerateSceneError: every point is the same point (no extent), or
        fewer distinct points than one split of the root needs: the tree
        would be a single region and the region loss constant.
    """
    n = xyz.shape[0]
    q = xyz.astype(np.float32) + np.float32(0)  # -0.0 -> 0.0
    # equal float32 triples are equal bit patterns: sort two integer keys
    u = q.view(np.uint32).astype(np.uint64)
    hi, lo = (u[:, 0] << np.uint64(32)) | u[:, 1], u[:, 2]
    srt = np.lexsort((lo, hi))
    hi, lo = hi[srt], lo[srt]
    distinct = 1 + int(((hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])).sum())
    if distinct == 1:
        raise DegenerateSceneError(
            f'{path}: all {n} points are the same point (no extent); a '
            'scene needs distinct points to be split into regions: remove '
            'it from the source')
    need = max(int(min_points_to_split), 2)
    if distinct < need:
        raise DegenerateSceneError(
            f'{path}: {distinct} distinct points (of {n}) are fewer than '
            f'min_points_to_split={need}, so the region tree would be a '
            'single region with nothing to contrast; remove the scene or '
            'lower --min-points-to-split')
    warnings = []
    dup = n - distinct
    if dup >= DUPLICATE_RATIO * n:
        warnings.append(f'{dup} of {n} points ({100 * dup / n:.0f}%) '
                        'repeat another point exactly')
    c = q.astype(np.float64)
    extent = float((c.max(0) - c.min(0)).max())
    if extent < SMALL_EXTENT:
        cells = len(np.unique(np.floor(c / WARN_VOXEL).astype(np.int64),
                              axis=0))
        warnings.append(
            f'all points lie within {extent * 1000:.3g} mm (the longest '
            f'side); a scene in metres spans metres: coordinates in another '
            f'unit? at {WARN_VOXEL * 100:g} cm voxels SpUNet sees {cells} '
            f'voxel(s)')
    c -= c.mean(0)
    spread = np.sqrt(np.clip(np.linalg.eigvalsh(c.T @ c / n), 0, None))
    spread = spread[::-1]                   # descending standard deviations
    if spread[1] <= FLAT_RATIO * spread[0]:
        warnings.append(f'all points lie on a line (spread {spread[0]:.3g} '
                        f'm along it, {spread[1]:.2g} m across): normals '
                        'and regions are those of a line')
    elif spread[2] <= FLAT_RATIO * spread[0]:
        warnings.append(f'all points lie in a plane (thickness '
                        f'{spread[2]:.2g} m over {spread[0]:.3g} m)')
    return warnings


def prepare_scene(source, out, voxel_size=None, branching=8, max_depth=4,
                  min_points_to_split=64, seed=0, overwrite=False,
                  normal_k=16, labels=None):
    """Prepare one scene (see the module docstring).

    Args:
        source: :class:`readers.SceneSource`.
        out: output root; the scene goes to ``out/<split>/<scene_id>``.
        voxel_size: grid subsampling in metres (None / 0: keep all points).
        branching, max_depth, min_points_to_split, seed: region tree
            parameters (:func:`region_tree.build_region_tree`).
        normal_k: neighbours of the PCA normals.
        labels: the label rule the source's loader applied
            (:meth:`readers.LabelMap.describe`), recorded in meta.json.

    Returns:
        dict(scene_id, split, status='done', num_points, regions_per_level,
        normal_source, warnings (list of str), class_counts ({id: points},
        -1 unlabelled; None without labels), label_unmapped ({input id:
        input points} that became -1 unasked), fields (the optional fields
        kept: ``color``, ``intensity``, ``labels``, ``normal`` from the
        source), intensity_constant (the intensity is one value for every
        point), ignored_fields (fields of the source that are not read,
        e.g. ``curvature``), seconds; class_counts, label_unmapped,
        ignored_fields and intensity_range (``[min, max]`` of the stored
        intensity, or null) are also in meta.json.

    Raises:
        DegenerateSceneError: see :func:`check_cloud`.
    """
    t0 = time.perf_counter()
    d = source.load()
    coord = d['coord']                     # (N, 3) float64, absolute
    n_raw = coord.shape[0]
    # before the origin and the voxel grid, which a far outlier breaks
    outlier = coordinate_outlier(coord)
    if outlier:
        raise DegenerateSceneError(f'{source.path}: {outlier}')
    # Integer-metre origin: stored float32 coordinates stay small (about
    # 1e-6 m resolution in a 10 m room) however far the scan sits from
    # (0, 0, 0); the original frame is one addition away (meta.origin).
    origin = np.floor(coord.min(0))
    xyz = coord - origin
    per_point = {k: d.get(k) for k in ('color', 'normal', 'segment',
                                       'intensity')
                 if d.get(k) is not None}
    normal_source = 'file' if 'normal' in per_point else None
    if normal_source is None and d['faces'] is not None and len(d['faces']):
        # mesh normals need the faces, which subsampling would invalidate
        nrm, valid = mesh_vertex_normals(xyz, d['faces'])
        per_point['normal'] = nrm
        per_point['_mesh_valid'] = valid
        normal_source = 'mesh'
    if voxel_size:
        keep = voxel_subsample(xyz, voxel_size)
        xyz = xyz[keep]
        per_point = {k: v[keep] for k, v in per_point.items()}
    warnings = check_cloud(source.path, xyz, min_points_to_split)
    tree, order = build_region_tree(
        xyz, branching=branching, max_depth=max_depth,
        min_points_to_split=min_points_to_split, seed=seed)
    # after the depth-first reorder neighbours are close in memory, which
    # also speeds up the kd-tree queries of the PCA normals below
    xyz = xyz[order]
    per_point = {k: np.asarray(v)[order] for k, v in per_point.items()}
    if normal_source is None:
        nrm, normal_source = compute_normals(xyz, k=normal_k)
    else:
        nrm = np.asarray(per_point['normal'], dtype=np.float64)
        length = np.linalg.norm(nrm, axis=1)
        # file normals may be unnormalised; zero or NaN ones, and mesh
        # vertices without a face, get PCA normals
        valid = np.isfinite(length) & (length > 1e-12)
        valid &= per_point.pop('_mesh_valid', valid)
        nrm[valid] /= length[valid, None]
        if not valid.all():
            nrm[~valid] = compute_normals(xyz, k=normal_k)[0][~valid]
            normal_source += '+pca'
        nrm = nrm.astype(np.float32)
    meta = dict(scene_id=source.scene_id, source=source.path,
                layout=source.layout, split=source.split,
                branching=branching, max_depth=max_depth,
                min_points_to_split=min_points_to_split, seed=seed,
                voxel_size=voxel_size or None, normal_source=normal_source,
                num_points_raw=int(n_raw), warnings=warnings,
                labels=labels, class_counts=_class_counts(
                    per_point.get('segment')),
                label_unmapped={str(k): v for k, v in
                                (d.get('label_unmapped') or {}).items()},
                ignored_fields=list(d.get('ignored') or ()),
                intensity_range=_value_range(per_point.get('intensity')))
    full = save_scene(os.path.join(out, source.split, source.scene_id),
                      xyz + origin, nrm, tree,
                      color=per_point.get('color'),
                      segment=per_point.get('segment'),
                      intensity=per_point.get('intensity'), meta=meta,
                      origin=origin, overwrite=overwrite)
    return dict(scene_id=source.scene_id, split=source.split, status='done',
                num_points=full['num_points'],
                regions_per_level=full['regions_per_level'],
                normal_source=normal_source, warnings=warnings,
                class_counts=meta['class_counts'],
                label_unmapped=meta['label_unmapped'],
                fields=_kept_fields(full),
                intensity_constant=_intensity_constant(full),
                ignored_fields=meta['ignored_fields'],
                seconds=time.perf_counter() - t0)


def _value_range(values):
    """``[min, max]`` of a per-point array (floats), or None."""
    if values is None:
        return None
    v = np.asarray(values)
    return [float(v.min()), float(v.max())]


def _intensity_constant(meta):
    """Whether a prepared scene's intensity is one value everywhere (a
    source that writes the field but never measured it)."""
    rng = meta.get('intensity_range')
    return bool(meta.get('has_intensity') and isinstance(rng, list)
                and len(rng) == 2 and rng[0] == rng[1])


def _kept_fields(meta):
    """The optional per-point fields a prepared scene holds (from its
    ``meta.json``): ``color``, ``intensity``, ``labels``, and ``normal``
    when the normals came from the source (file or mesh), not PCA alone."""
    out = [k for k, flag in (('color', 'has_color'),
                             ('intensity', 'has_intensity'),
                             ('labels', 'has_segment')) if meta.get(flag)]
    if str(meta.get('normal_source') or '').split('+')[0] in ('file',
                                                                'mesh'):
        out.append('normal')
    return out


def _class_counts(segment):
    """``{str(id): points}`` of the ids present (-1: unlabelled), or None
    without labels."""
    if segment is None:
        return None
    seg = np.asarray(segment, dtype=np.int64)
    counts = np.bincount(seg + 1)
    ids = np.flatnonzero(counts)
    return {str(int(i) - 1): int(counts[i]) for i in ids}


def _run_one(source, out, kwargs):
    """Worker entry (top level, so spawn can pickle it): never raises."""
    try:
        return prepare_scene(source, out, **kwargs)
    except Exception as e:  # noqa: BLE001 - one bad scene must not stop all
        msg = _one_line(e)
        # readers name the file; other errors get the source path prefixed
        if source.path not in msg:
            msg = f'{source.path}: {type(e).__name__}: {msg}'
        return dict(scene_id=source.scene_id, split=source.split,
                    status='failed', error=msg,
                    refused=isinstance(e, DegenerateSceneError))


class _Progress:
    """A one-line progress bar on stderr (a plain line per scene when
    stderr is not a terminal, so logs stay readable)."""

    def __init__(self, total, enabled=True, stream=None):
        self.total, self.done, self.failed = total, 0, 0
        self.enabled = enabled and total > 0
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, 'isatty') and self.stream.isatty()
        self.t0 = time.perf_counter()

    def update(self, res):
        self.done += 1
        self.failed += res['status'] == 'failed'
        if not self.enabled:
            return
        el = time.perf_counter() - self.t0
        eta = el / self.done * (self.total - self.done)
        tail = f'{self.done}/{self.total} scenes, {self.failed} failed, ' \
               f'{el:.0f}s elapsed, ~{eta:.0f}s left'
        if self.tty:
            w = 30
            fill = int(w * self.done / self.total)
            self.stream.write(f'\r[{"#" * fill}{"." * (w - fill)}] {tail}')
            if self.done == self.total:
                self.stream.write('\n')
        else:
            self.stream.write(f'{res["split"]}/{res["scene_id"]}: '
                              f'{res["status"]} ({tail})\n')
        self.stream.flush()


def _stale(meta, params):
    diff = [k for k in TREE_PARAMS if meta.get(k) != params.get(k)]
    if 'has_intensity' not in meta:
        # prepared before intensity was read: a source's intensity is missing
        diff.append('intensity (not read by the version that prepared it)')
    return diff


def prepare_dataset(src, out, layout='auto', splits=None, val_ratio=None,
                    workers=None, voxel_size=None, branching=8, max_depth=4,
                    min_points_to_split=64, seed=0, overwrite=False,
                    progress=True, mmdet3d_label_ids='nyu40', log=None,
                    label_map=None, ignore_labels=()):
    """Prepare every scene of ``src`` into ``out``.

    Args:
        src: input folder, in one of :data:`readers.LAYOUTS`.
        out: output root (``out/<split>/<scene_id>/``).
        layout: ``'auto'`` or a layout name.
        splits: folder of ``scannetv2_{train,val,test}.txt`` lists.
        val_ratio: without split information, send this fraction to val.
        workers: processes (None: one per CPU, at most one per scene; 0 or
            1: in this process).
        voxel_size, branching, max_depth, min_points_to_split, seed: see
            :func:`prepare_scene`.
        overwrite: re-prepare scenes already prepared (default: skip them).
        progress: progress bar on stderr.
        log: callable for one-line notes (default: print to stderr).
        label_map: ``files`` layout only: how label ids map to stored ids:
            a ``--label-map`` string (JSON file or ``src:dst,...``), a dict
            ``{src: dst}`` or None (ScanNet-20 ids: 0..19 kept, others -1).
        ignore_labels: ``files`` layout only: ids that mean unlabelled.

    Returns:
        summary dict: ``out``, ``layout``, ``scenes`` (found), ``prepared``,
        ``skipped``, ``stale`` (skipped scenes prepared with other
        parameters), ``failed`` (list of dict(scene_id, split, error,
        refused)), ``refused`` (how many of them :func:`check_cloud`
        refused), ``warned`` (list of dict(scene_id, split, warnings) of
        prepared and skipped scenes with warnings), ``labelled`` (scenes
        with labels), ``class_counts`` ({id: points}, -1 unlabelled),
        ``label_unmapped`` ({input id: input points} that became -1 without
        being mapped or ignored), ``label_map`` (the rule, or None),
        ``fields`` ({optional field kept: scenes}, see
        :func:`prepare_scene`), ``intensity_constant`` (scenes whose
        intensity is one value for every point), ``ignored_fields``
        ({source field not read: scenes}), ``points`` (total over prepared
        and skipped scenes),
        ``regions_per_level_mean`` (list), ``splits`` ({split: count}),
        ``seconds``.
    """
    t0 = time.perf_counter()
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    out = os.path.abspath(os.fspath(out))
    if isinstance(label_map, str):
        label_map = parse_label_map(label_map)
    elif isinstance(label_map, dict):
        label_map = parse_label_map(
            ','.join(f'{k}:{v}' for k, v in label_map.items()))
    rule = LabelMap(tuple(label_map or ()),
                    tuple(sorted({int(v) for v in ignore_labels or ()})))
    layout, sources = find_scenes(src, layout, splits=splits,
                                  val_ratio=val_ratio, seed=seed, log=log,
                                  mmdet3d_label_ids=mmdet3d_label_ids,
                                  label_map=rule)
    kwargs = dict(voxel_size=voxel_size, branching=branching,
                  max_depth=max_depth,
                  min_points_to_split=min_points_to_split, seed=seed,
                  overwrite=overwrite, labels=rule.describe())
    params = dict(kwargs, voxel_size=voxel_size or None)
    for split in sorted({s.split for s in sources}):
        for name in recover_interrupted(os.path.join(out, split)):
            log(f'{os.path.join(out, split, name)}: left by an interrupted '
                'run; cleaned up')
    results, todo, stale = [], [], []
    for s in sources:
        scene_dir = os.path.join(out, s.split, s.scene_id)
        if not overwrite and is_prepared(scene_dir):
            try:
                meta = read_meta(scene_dir)
            except ValueError as e:
                # an unreadable meta.json is a broken scene, not a done one
                results.append(dict(scene_id=s.scene_id, split=s.split,
                                    status='failed', error=_one_line(e),
                                    refused=False))
                continue
            diff = _stale(meta, params)
            if diff:
                stale.append((f'{s.split}/{s.scene_id}', diff))
            results.append(dict(
                scene_id=s.scene_id, split=s.split, status='skipped',
                num_points=meta.get('num_points', 0),
                regions_per_level=meta.get('regions_per_level', []),
                warnings=meta.get('warnings') or [],
                class_counts=meta.get('class_counts'),
                label_unmapped=meta.get('label_unmapped') or {},
                fields=_kept_fields(meta),
                intensity_constant=_intensity_constant(meta),
                ignored_fields=meta.get('ignored_fields') or []))
        else:
            todo.append(s)
    if stale:
        log(f'{len(stale)} prepared scenes used other parameters (e.g. '
            f'{stale[0][0]}: {", ".join(stale[0][1])}); pass --overwrite to '
            'rebuild them')
    if results:
        log(f'{len(results)} scenes already prepared in {out}: skipped '
            '(--overwrite rebuilds them)')
    # largest first: the slowest scenes start early, workers finish together
    todo.sort(key=lambda s: -_size(s.path))
    if workers is None:
        workers = os.cpu_count() or 1
    workers = max(0, min(int(workers), len(todo)))
    bar = _Progress(len(todo), enabled=progress)
    if workers <= 1:
        for s in todo:
            res = _run_one(s, out, kwargs)
            results.append(res)
            bar.update(res)
    else:
        results += _run_pool(todo, out, kwargs, workers, bar)
    done = [r for r in results if r['status'] in ('done', 'skipped')]
    failed = [dict(scene_id=r['scene_id'], split=r['split'],
                   error=r['error'], refused=r.get('refused', False))
              for r in results if r['status'] == 'failed']
    warned = [dict(scene_id=r['scene_id'], split=r['split'],
                   warnings=list(r['warnings']))
              for r in done if r.get('warnings')]
    class_counts, unmapped, labelled = {}, {}, 0
    for r in done:
        labelled += r.get('class_counts') is not None
        for key, total in (('class_counts', class_counts),
                           ('label_unmapped', unmapped)):
            for k, v in (r.get(key) or {}).items():
                total[int(k)] = total.get(int(k), 0) + int(v)
    depth = max((len(r['regions_per_level']) for r in done), default=0)
    rpl = np.zeros((len(done), depth))
    for i, r in enumerate(done):
        rpl[i, :len(r['regions_per_level'])] = r['regions_per_level']
    splits_count, fields, ignored = {}, {}, {}
    for r in done:
        splits_count[r['split']] = splits_count.get(r['split'], 0) + 1
        for key, total in (('fields', fields), ('ignored_fields', ignored)):
            for name in r.get(key) or ():
                total[name] = total.get(name, 0) + 1
    constant = sum(bool(r.get('intensity_constant')) for r in done)
    return dict(
        out=out, layout=layout, scenes=len(sources),
        prepared=sum(r['status'] == 'done' for r in results),
        skipped=sum(r['status'] == 'skipped' for r in results),
        stale=[name for name, _ in stale], failed=failed,
        refused=sum(f['refused'] for f in failed), warned=warned,
        labelled=labelled, class_counts=dict(sorted(class_counts.items())),
        label_unmapped=dict(sorted(unmapped.items())),
        label_map=rule.describe(), fields=fields, ignored_fields=ignored,
        intensity_constant=constant,
        points=int(sum(r['num_points'] for r in done)),
        regions_per_level_mean=(rpl.mean(0).round(1).tolist()
                                if len(done) else []),
        splits=splits_count, seconds=round(time.perf_counter() - t0, 2))


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _run_pool(todo, out, kwargs, workers, bar):
    results = []
    # spawn, not fork: the caller may be a training process with torch
    # threads, which fork can deadlock
    ctx = mp.get_context('spawn')
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        futs = {pool.submit(_run_one, s, out, kwargs): s for s in todo}
        try:
            for f in as_completed(futs):
                s = futs[f]
                try:
                    res = f.result()
                except BrokenProcessPool as e:
                    # a worker died (out of memory, killed): its scene and
                    # those still queued fail, with the reason
                    res = dict(scene_id=s.scene_id, split=s.split,
                               status='failed',
                               error=f'{s.path}: worker process died '
                               f'({_one_line(e) or "killed"})')
                results.append(res)
                bar.update(res)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results


def _counts_text(counts, limit=None):
    items = list(counts.items())
    if limit is not None and len(items) > limit:
        items = sorted(items, key=lambda kv: -kv[1])[:limit]
    text = ', '.join(f'{k}: {v:,}' for k, v in items)
    return text + (', ...' if len(items) < len(counts) else '')


def _class_line(s):
    """Points per stored class id over the done scenes."""
    counts = dict(s.get('class_counts') or {})
    if not s.get('labelled'):
        return 'labels: none'
    rule = 'ids from --label-map' if (s.get('label_map') or {}).get('map') \
        else 'ScanNet-20 ids'
    unlab = counts.pop(-1, 0)
    return (f'labels ({rule}; points per class, {s["labelled"]} labelled '
            f'scenes): {_counts_text(counts) or "none"}; unlabelled (-1): '
            f'{unlab:,}')


def _unmapped_line(s):
    um = s['label_unmapped']
    where = ('not in --label-map' if (s.get('label_map') or {}).get('map')
             else 'outside the ScanNet-20 ids 0..19')
    return (f'labels: {sum(um.values()):,} input points had ids {where} '
            f'({_counts_text(um, limit=10)}) and became unlabelled (-1); '
            'map them with --label-map SRC:DST,... or mark an id as '
            'unlabelled with --ignore-label ID')


_FIELD_TEXT = dict(color='color', intensity='intensity',
                   normal='normals from the source', labels='labels')


def _fields_lines(s):
    """Which optional fields the prepared scenes hold, and which fields of
    the sources were not read (each named once, with its scene count)."""
    n = s['prepared'] + s['skipped']
    kept = s.get('fields') or {}
    names = [k for k in _FIELD_TEXT if k in kept] + sorted(
        k for k in kept if k not in _FIELD_TEXT)
    parts = []
    for k in names:
        text = f'{_FIELD_TEXT.get(k, k)} ({kept[k]}/{n} scenes'
        if k == 'intensity' and s.get('intensity_constant'):
            text += (f', constant in {s["intensity_constant"]}: no '
                     'information there')
        elif k == 'normal' and kept[k] < n:
            text += ', the others PCA'
        parts.append(text + ')')
    lines = [f'fields kept: {", ".join(parts) or "none"}']
    ign = s.get('ignored_fields') or {}
    if ign:
        lines.append('fields ignored (in the source, not read): ' + ', '.join(
            f'{k} ({v} scenes)' for k, v in sorted(
                ign.items(), key=lambda kv: (-kv[1], kv[0]))))
    return lines


def format_summary(summary):
    """Multi-line human summary of :func:`prepare_dataset`'s result."""
    s = summary
    lines = [
        f'layout {s["layout"]} -> {s["out"]}',
        f'scenes: {s["scenes"]} found, {s["prepared"]} prepared, '
        f'{s["skipped"]} skipped, {len(s["failed"])} failed '
        f'({", ".join(f"{k}: {v}" for k, v in sorted(s["splits"].items()))})',
        f'points: {s["points"]:,}',
        'regions per level (mean): '
        + (' / '.join(f'{v:g}' for v in s['regions_per_level_mean'])
           or '-'),
        f'degenerate clouds: {s["refused"]} refused, {len(s["warned"])} '
        'prepared with a warning',
        _class_line(s),
    ] + _fields_lines(s) + [
        f'seconds: {s["seconds"]}',
    ]
    if s['stale']:
        lines.append(f'stale (other tree or label parameters, --overwrite '
                     'rebuilds): '
                     f'{len(s["stale"])}')
    if s.get('label_unmapped'):
        lines.append(_unmapped_line(s))
    for w in s['warned']:
        for text in w['warnings']:
            lines.append(f'WARNING {w["split"]}/{w["scene_id"]}: {text}')
    for f in s['failed']:
        what = 'REFUSED' if f['refused'] else 'FAILED'
        lines.append(f'{what} {f["split"]}/{f["scene_id"]}: {f["error"]}')
    return '\n'.join(lines)
