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
           'limit_labelled_points']


class SegLabelError(DataPreparationError):
    """A scene has no labels, or a label the model cannot predict; the
    message is one line naming the scene and the value."""


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


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

    Raises:
        SegLabelError: (when the scene list is read) a scene without labels,
            or a label outside ``[0, num_classes)`` other than -1, named
            with its value.
    """

    def __init__(self, data_root, num_classes: int = 20,
                 labelled_fraction: Optional[float] = None,
                 labelled_scenes: Optional[int] = None,
                 labelled_points: Optional[int] = None,
                 label_seed: int = 0, require_labels: bool = True, **kwargs):
        name = 'SegDataset'
        if not _is_int(num_classes) or num_classes < 2:
            raise ValueError(f'{name}: num_classes must be an int >= 2, got '
                             f'{num_classes!r}')
        if labelled_fraction is not None and labelled_scenes is not None:
            raise ValueError(f'{name}: set labelled_fraction or '
                             'labelled_scenes, not both')
        if labelled_fraction is not None and not (
                isinstance(labelled_fraction, numbers.Real)
                and not isinstance(labelled_fraction, bool)
                and 0 < labelled_fraction <= 1):
            raise ValueError(f'{name}: labelled_fraction must be a number in '
                             f'(0, 1], got {labelled_fraction!r}')
        for key, value in (('labelled_scenes', labelled_scenes),
                           ('labelled_points', labelled_points)):
            if value is not None and not (_is_int(value) and value >= 1):
                raise ValueError(f'{name}: {key} must be a positive int or '
                                 f'None, got {value!r}')
        if not _is_int(label_seed):
            raise ValueError(f'{name}: label_seed must be an int, got '
                             f'{label_seed!r}')
        self.num_classes = int(num_classes)
        self.labelled_fraction = labelled_fraction
        self.labelled_scenes = labelled_scenes
        self.labelled_points = labelled_points
        self.label_seed = int(label_seed)
        self.require_labels = require_labels
        super().__init__(data_root, **kwargs)
        names = self.metainfo.get('classes')
        if names is not None and (isinstance(names, str)
                                  or len(names) != self.num_classes):
            raise ValueError(
                f'{name}: metainfo classes has '
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
        for info in data_list:
            self._check_labels(info['scene_dir'], read_meta(info['scene_dir']))
        if self.labelled_fraction is not None or \
                self.labelled_scenes is not None:
            keep = set(choose_labelled_scenes(
                [d['scene_id'] for d in data_list], self.labelled_fraction,
                self.labelled_scenes, self.label_seed))
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
