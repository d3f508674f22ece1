"""Labelled scenes for semantic segmentation, with label-efficient options.
"""
import numbers
import os.path as osp
from typing import Optional

import numpy as np

from dbbd.registry import DATASETS
from dbbd.utils.rng import scene_rng
from .dbbd_dataset import DataPreparationError, DBBDDataset

__all__ = ['SegDataset', 'SegLabelError', 'choose_labelled_scenes',
           'limit_labelled_points', 'dataset_class_counts', 'check_seg_args',
           'LABEL_EFFICIENT_KEYS', 'plan_labelled_subset']

#: The label-efficient options of :class:`SegDataset` (training only).
LABEL_EFFICIENT_KEYS = ('labelled_fraction', 'labelled_scenes',
                        'labelled_points')


class SegLabelError(DataPreparationError):
    """A scene has no labels, or a label the model cannot predict; the
    message is one line naming the scene and the value."""


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def check_seg_args(owner, num_classes=20, labelled_fraction=None,
                   labelled_scenes=None, labelled_points=None, label_seed=0):
    """Raise :class:`~dbbd.utils.config_check.ConfigError` (one line
    starting with ``owner``: the dataset, or its config key) for a
    :class:`SegDataset` argument that cannot work; nothing is read."""
    from dbbd.utils.config_check import ConfigError
    if not _is_int(num_classes) or num_classes < 2:
        raise ConfigError(f'{owner}: num_classes must be an int >= 2, got '
                          f'{num_classes!r}')
    if labelled_fraction is not None and labelled_scenes is not None:
        raise ConfigError(
            f'{owner}: set labelled_fraction or labelled_scenes, not both '
            f'(got labelled_fraction={labelled_fraction!r} and '
            f'labelled_scenes={labelled_scenes!r})')
    if labelled_fraction is not None and not (
            isinstance(labelled_fraction, numbers.Real)
            and not isinstance(labelled_fraction, bool)
            and 0 < labelled_fraction <= 1):
        raise ConfigError(f'{owner}: labelled_fraction must be a number in '
                          f'(0, 1], got {labelled_fraction!r}')
    for key, value in (('labelled_scenes', labelled_scenes),
                       ('labelled_points', labelled_points)):
        if value is not None and not (_is_int(value) and value >= 1):
            raise ConfigError(f'{owner}: {key} must be a positive int or '
                              f'None, got {value!r}')
    if not _is_int(label_seed):
        raise ConfigError(f'{owner}: label_seed must be an int, got '
                          f'{label_seed!r}')


def _labelled_count(meta):
    """Labelled points of a scene by its meta.json (None: not recorded)."""
    counts = meta.get('class_counts')
    if not meta.get('has_segment') or counts is None:
        return None if meta.get('has_segment') else 0
    return sum(int(v) for k, v in counts.items() if int(k) != -1)


def plan_labelled_subset(owner, scene_metas, fraction=None, count=None,
                         points=None, seed=0):
    """The labelled subset of a label-efficient split, checked.

    Args:
        owner: the dataset or its config key, for messages.
        scene_metas: ``[(scene_id, meta), ...]`` of the split (after
            ``max_scenes``).
        fraction, count, points, seed: ``labelled_fraction``,
            ``labelled_scenes``, ``labelled_points``, ``label_seed``.

    Returns:
        (kept scene ids sorted, one-line summary or None when no option is
        set).

    Raises:
        ConfigError: ``count`` larger than the split, or ``points`` at or
            above the labelled points of every kept scene (the option would
            change nothing).
    """
    from dbbd.utils.config_check import ConfigError
    ids = sorted(sid for sid, _ in scene_metas)
    if fraction is None and count is None and points is None:
        return ids, None
    if count is not None and count > len(ids):
        raise ConfigError(
            f'{owner}: labelled_scenes={count} but the split has '
            f'{len(ids)} scene(s); set labelled_scenes to at most '
            f'{len(ids)}, or leave it unset to label every scene')
    kept = choose_labelled_scenes(ids, fraction, count, seed) if (
        fraction is not None or count is not None) else ids
    parts = []
    if fraction is not None or count is not None:
        how = (f'labelled_fraction={fraction:g}' if fraction is not None
               else f'labelled_scenes={count}')
        shown = ', '.join(kept[:8]) + (f', +{len(kept) - 8} more'
                                        if len(kept) > 8 else '')
        parts.append(f'{len(kept)} of {len(ids)} scenes labelled ({how}, '
                     f'label_seed={seed}): {shown}')
    if points is not None:
        metas = dict(scene_metas)
        counts = [_labelled_count(metas[sid]) for sid in kept]
        if all(c is not None for c in counts):
            if counts and points >= max(counts):
                raise ConfigError(
                    f'{owner}: labelled_points={points} is at or above the '
                    f'labelled points of every scene (largest: '
                    f'{max(counts):,}), so every label would be kept; set '
                    'a smaller labelled_points (ScanNet\'s benchmark: 20, '
                    '50, 100, 200), or leave it unset for all labels')
            total = sum(counts)
            kept_points = sum(min(points, c) for c in counts)
            parts.append(
                f'labelled_points={points} (label_seed={seed}): '
                f'{kept_points:,} of {total:,} labelled points kept')
        else:
            parts.append(f'labelled_points={points} per scene '
                         f'(label_seed={seed})')
    return kept, f'{owner}: label-efficient training: ' + '; '.join(parts)


def choose_labelled_scenes(scene_ids, fraction=None, count=None, seed=0):
    """The labelled training scenes of a label-efficient run.

    ``count`` scenes, or ``max(1, round(fraction * len(scene_ids)))``, drawn
    without replacement by a generator seeded with ``seed`` from the scenes
    sorted by id: the same subset for the same seed, whatever order the ids
    come in. Returned sorted by id.
    """
    ids = sorted(scene_ids)
    k = len(ids) if count is None and fraction is None else (
        count if count is not None else max(1, int(round(fraction *
                                                         len(ids)))))
    k = min(k, len(ids))
    pick = np.random.default_rng(seed).permutation(len(ids))[:k]
    return [ids[i] for i in sorted(pick)]


def limit_labelled_points(segment, num_points, seed, scene_id,
                          ignore_index=-1):
    """Keep the labels of ``num_points`` labelled points, set the others to
    ``ignore_index`` (ScanNet's data-efficient "limited annotations").

    The points are drawn among the labelled ones by a generator seeded with
    ``(seed, crc32(scene_id))``: the same points every epoch and in every
    run with that seed. A scene with fewer labelled points keeps them all.

    Returns:
        (N,) int64, a new array.
    """
    segment = np.asarray(segment, dtype=np.int64)
    labelled = np.flatnonzero(segment != ignore_index)
    out = np.full(segment.shape, ignore_index, np.int64)
    if labelled.size > num_points:
        labelled = labelled[np.sort(scene_rng(seed, scene_id).choice(
            labelled.size, num_points, replace=False))]
    out[labelled] = segment[labelled]
    return out


@DATASETS.register_module()
class SegDataset(DBBDDataset):
    """Prepared scenes with their labels, for semantic segmentation.

    The same prepared format and pipeline contract as :class:`DBBDDataset`
    (segmentation pipelines pack one view: ``MultiView(num_views=1)``); on
    top, every scene must be labelled with ids in ``[0, num_classes)`` (-1:
    unlabelled), and a training split can be made label-efficient,
    deterministically by ``label_seed``:

    - ``labelled_fraction`` (float in (0, 1]) or ``labelled_scenes`` (int):
      train on that fraction / number of the scenes (ScanNet's "limited
      reconstructions"); the others are left out;
    - ``labelled_points`` (int): keep the labels of that many labelled
      points per scene, the others become -1 (ScanNet's "limited
      annotations": 20, 50, 100, 200).

    Args:
        num_classes: number of classes (ScanNet-20: 20).
        labelled_fraction, labelled_scenes, labelled_points, label_seed:
            see above (None: all).
        require_labels: False for prediction on an unlabelled split (every
            point then counts as unlabelled).
        metainfo: ``dict(classes=(...))``: ``num_classes`` names for the
            metrics (none by default: numbered).
        **kwargs: :class:`DBBDDataset`'s.

    A label-efficient setting is logged in one line when the scene list is
    read: how many scenes are labelled (and which), how many labelled
    points are kept.

    Raises:
        ConfigError: an argument out of range; (when the scene list is
            read) ``labelled_scenes`` larger than the split, or
            ``labelled_points`` at or above every scene's labelled points.
        SegLabelError: (when the scene list is read) a scene without labels,
            or a label outside ``[0, num_classes)`` other than -1, named
            with its value.
    """

    def __init__(self, data_root, num_classes: int = 20,
                 labelled_fraction: Optional[float] = None,
                 labelled_scenes: Optional[int] = None,
                 labelled_points: Optional[int] = None,
                 label_seed: int = 0, require_labels: bool = True, **kwargs):
        check_seg_args('SegDataset', num_classes, labelled_fraction,
                       labelled_scenes, labelled_points, label_seed)
        self.num_classes = int(num_classes)
        self.labelled_fraction = labelled_fraction
        self.labelled_scenes = labelled_scenes
        self.labelled_points = labelled_points
        self.label_seed = int(label_seed)
        self.require_labels = require_labels
        self._class_counts = None
        super().__init__(data_root, **kwargs)
        names = self.metainfo.get('classes')
        if names is not None and (isinstance(names, str)
                                  or len(names) != self.num_classes):
            raise ValueError(
                f'SegDataset: metainfo classes has '
                f'{1 if isinstance(names, str) else len(names)} names but '
                f'num_classes is {self.num_classes}; give one name per class')

    def _label_error(self, scene_dir, what):
        return SegLabelError(
            f'SegDataset: scene {osp.basename(scene_dir)} ({scene_dir}) '
            f'{what}')

    def _check_labels(self, scene_dir, meta):
        if not meta.get('has_segment'):
            if self.require_labels:
                raise self._label_error(
                    scene_dir, 'has no labels, and segmentation needs them; '
                    'prepare the split from labelled data (segment20.npy, '
                    '.labels.ply, --label-map), or point the loader at a '
                    'labelled split')
            return
        counts = meta.get('class_counts') or {}
        bad = sorted(int(k) for k in counts if int(k) != -1 and not
                     0 <= int(k) < self.num_classes)
        if bad:
            raise self._label_error(
                scene_dir, f'has label {bad[0]} ({counts[str(bad[0])]} '
                f'points) but num_classes is {self.num_classes}; set '
                'num_classes (top level of the config, or --cfg-options '
                'num_classes=N), or map the labels with tools/create_data.py '
                '--label-map')

    def load_data_list(self):
        from .scene_io import read_meta
        data_list = super().load_data_list()
        metas = []
        for info in data_list:
            meta = read_meta(info['scene_dir'])
            self._check_labels(info['scene_dir'], meta)
            metas.append((info['scene_id'], meta))
        keep, summary = plan_labelled_subset(
            f'SegDataset ({osp.join(self.data_root, self.split)})', metas,
            self.labelled_fraction, self.labelled_scenes,
            self.labelled_points, self.label_seed)
        #: the one line logged for a label-efficient setting (else None)
        self.label_summary = summary
        if summary is not None:
            from mmengine.logging import print_log
            print_log(summary, logger='current')
            keep = set(keep)
            data_list = [d for d in data_list if d['scene_id'] in keep]
        return data_list

    def _load(self, info):
        scene, tree = super()._load(info)
        segment = scene.get('segment')
        if segment is None:
            if self.require_labels:
                raise self._label_error(info['scene_dir'], 'has no labels')
            return scene, tree
        segment = np.asarray(segment)
        if segment.size:
            lo, hi = int(segment.min()), int(segment.max())
            bad = hi if hi >= self.num_classes else (lo if lo < -1 else None)
            if bad is not None:
                raise self._label_error(
                    info['scene_dir'], f'has label {bad} but num_classes is '
                    f'{self.num_classes}; set num_classes or map the labels '
                    'with tools/create_data.py --label-map')
        if self.labelled_points is not None:
            scene = dict(scene, segment=limit_labelled_points(
                segment, self.labelled_points, self.label_seed,
                info['scene_id']))
        return scene, tree

    def class_counts(self) -> np.ndarray:
        """Labelled points per class over the scenes of this dataset (after
        ``labelled_fraction`` / ``labelled_scenes``), counting only the
        points ``labelled_points`` keeps: what training reads as targets
        (before the pipeline; grid sampling may drop some).

        A scene's counts come from its ``meta.json`` (``class_counts``,
        written by ``tools/create_data.py``); with ``labelled_points``, or
        for a scene prepared without them, from its ``segment.npy`` (memory
        mapped; ``limit_labelled_points`` applied as when loading). Computed
        once, then cached.

        Returns:
            ``(num_classes,)`` int64 (a copy).
        """
        if self._class_counts is None:
            if not self._fully_initialized:
                self.full_init()
            total = np.zeros(self.num_classes, np.int64)
            for info in self.data_list:
                total += self._scene_class_counts(info)
            self._class_counts = total
        return self._class_counts.copy()

    def _meta_class_counts(self, meta):
        """``meta['class_counts']`` as ``(K,)`` int64, or None when absent
        or not a ``{id: count}`` object of ints."""
        counts = meta.get('class_counts')
        if not isinstance(counts, dict):
            return None
        out = np.zeros(self.num_classes, np.int64)
        for key, value in counts.items():
            try:
                k = int(key)
            except (TypeError, ValueError):
                return None
            if not (isinstance(value, int) and not isinstance(value, bool)
                    and value >= 0):
                return None
            if 0 <= k < self.num_classes:
                out[k] = value
        return out

    def _scene_class_counts(self, info) -> np.ndarray:
        from .scene_io import load_scene, read_meta
        k = self.num_classes
        if self.labelled_points is None:
            meta = read_meta(info['scene_dir'])
            if not meta.get('has_segment'):
                return np.zeros(k, np.int64)
            counts = self._meta_class_counts(meta)
            if counts is not None:
                return counts
        segment = load_scene(info['scene_dir'], mmap=True,
                             check=False)['segment']
        if segment is None:
            return np.zeros(k, np.int64)
        segment = np.asarray(segment, dtype=np.int64)
        if self.labelled_points is not None:
            segment = limit_labelled_points(segment, self.labelled_points,
                                            self.label_seed, info['scene_id'])
        segment = segment[segment != -1]
        if segment.size and (segment.min() < 0 or segment.max() >= k):
            bad = int(segment.max() if segment.max() >= k else
                      segment.min())
            raise self._label_error(
                info['scene_dir'], f'has label {bad} but num_classes is {k}; '
                'set num_classes or map the labels with '
                'tools/create_data.py --label-map')
        return np.bincount(segment, minlength=k).astype(np.int64)


def dataset_class_counts(dataset) -> np.ndarray:
    """``(K,)`` int64 labelled points per class of a training dataset: its
    ``class_counts()``; summed over the parts of a ``ConcatDataset``
    (mmengine's or torch's), times ``times`` for a ``RepeatDataset``.

    Raises:
        ConfigError: a dataset (or wrapper) that cannot count its labels,
            or parts with different numbers of classes.
    """
    from dbbd.utils.config_check import ConfigError
    if callable(getattr(dataset, 'class_counts', None)):
        return np.asarray(dataset.class_counts(), dtype=np.int64)
    parts = getattr(dataset, 'datasets', None)
    if isinstance(parts, (list, tuple)) and parts:
        counts = [dataset_class_counts(d) for d in parts]
        sizes = sorted({c.shape[0] for c in counts})
        if len(sizes) > 1:
            raise ConfigError(
                f"class_weight='auto': the parts of the training "
                f'{type(dataset).__name__} have {sizes} classes; give them '
                'the same num_classes')
        return np.sum(counts, axis=0)
    inner = getattr(dataset, 'dataset', None)
    times = getattr(dataset, 'times', None)
    if inner is not None and isinstance(times, int) and not hasattr(
            dataset, 'indices'):
        return times * dataset_class_counts(inner)
    raise ConfigError(
        f"class_weight='auto' counts the labels of the training dataset, "
        f'but a {type(dataset).__name__} cannot count them (a SegDataset, '
        'or a ConcatDataset / RepeatDataset of SegDatasets, can); give '
        'class_weight as a list of num_classes numbers')
