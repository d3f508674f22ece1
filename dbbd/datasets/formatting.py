"""The last steps of a pipeline: views of a scene, and the packed sample.

A DBBD pipeline reads like mmpretrain's self-supervised ones::

    pipeline = [
        dict(type='MultiView', num_views=2, transforms=[...augmentations]),
        dict(type='PackDBBDInputs', feat_keys=('normal', )),
    ]

:class:`DBBDDataset` hands the pipeline one dict per scene (``coord``,
``normal``, ``color``, ``intensity``, ``segment``, the tree arrays, ids and
seeds);
:class:`MultiView` makes independently augmented copies of the point
attributes; :class:`PackDBBDInputs` assembles what
:func:`~dbbd.datasets.dbbd_collate` takes. Tools that need a dataset's
sample build the dataset (and so its own pipeline) instead of copying it.
"""
from typing import Sequence

import numpy as np
from mmengine.dataset import Compose

from dbbd.registry import TRANSFORMS
from .transforms import TREE_KEYS

__all__ = ['MultiView', 'OnViews', 'MultiCrop', 'PackDBBDInputs',
           'FEATURE_CHANNELS', 'feature_channels', 'pipeline_feat_keys',
           'set_feat_keys', 'check_feat_width']

#: Width of each point attribute that can be a feature: ``normal``,
#: ``color`` and ``coord`` 3 channels each, ``intensity`` 1.
FEATURE_CHANNELS = dict(normal=3, color=3, coord=3, intensity=1)

#: Point attributes a view carries (transforms may change them).
_VIEW_KEYS = ('coord', 'normal', 'color', 'intensity')

#: What to do when a scene lacks an attribute ``feat_keys`` asks for.
_MISSING_HINT = dict(
    intensity="drop 'intensity' from feat_keys, or prepare the scene from "
    'source files with an intensity / scalar_intensity field '
    '(tools/create_data.py --overwrite)')


def feature_channels(feat_keys: Sequence[str]) -> int:
    """Width of the features ``feat_keys`` make: the sum of their
    :data:`FEATURE_CHANNELS` (3 for ``normal``, ``color``, ``coord``; 1
    for ``intensity``), e.g. 7 for ``('color', 'normal', 'intensity')``."""
    unknown = [k for k in feat_keys if k not in FEATURE_CHANNELS]
    if unknown or not feat_keys:
        raise ValueError(
            f'feat_keys {tuple(feat_keys)!r}: use one or more of '
            f'{sorted(FEATURE_CHANNELS)}')
    return sum(FEATURE_CHANNELS[k] for k in feat_keys)


def _build(transforms):
    return Compose([
        TRANSFORMS.build(t) if isinstance(t, dict) else t for t in transforms
    ])


def _make_view(results, transforms, v):
    """View ``v`` (0-based) of the scene: float32 copies of its point
    attributes through ``transforms``, with the generator of
    ``(seed_key, v)``."""
    key = list(results.get('seed_key', (0, 0, 0)))
    view = {k: None if results.get(k) is None else np.array(
        results[k], dtype=np.float32) for k in _VIEW_KEYS}
    view['rng'] = np.random.default_rng(key + [v])
    view['view_index'] = v
    view = transforms(view)
    view.pop('rng', None)
    view.pop('view_index', None)
    return view


@TRANSFORMS.register_module()
class MultiView:
    """``num_views`` independently augmented copies of a scene's points.

    Each view starts from float32 copies of ``coord``, ``normal``,
    ``color`` and ``intensity`` (None where the scene has none) and
    goes through ``transforms`` with its own ``rng``, a
    ``numpy.random.Generator`` derived from ``results['seed_key']`` (the
    dataset's ``(seed, epoch, index)``) and the view number: the
    augmentation of a sample is a pure function of those numbers, whatever
    the number of loader workers and across ``--resume``. Transforms never
    drop or reorder points, so every view shares the scene's region tree.

    Args:
        num_views: 2 for the contrastive loss, 1 for features of one view
            (segmentation), 4 for test-time rotations (:class:`ViewRotateZ`).
        transforms: the per-view augmentations (``TRANSFORMS`` configs);
            each view dict also holds ``view_index`` (0-based) while they
            run.

    Adds ``results['views']``, a list of ``num_views`` dicts.
    """

    def __init__(self, num_views: int = 2, transforms: Sequence = ()):
        if not isinstance(num_views, int) or num_views < 1:
            raise ValueError(f'MultiView: num_views must be an int >= 1, got '
                             f'{num_views!r}')
        self.num_views = num_views
        self.transforms = _build(transforms)

    def __call__(self, results: dict) -> dict:
        results['views'] = [_make_view(results, self.transforms, v)
                            for v in range(self.num_views)]
        return results

    def __repr__(self):
        return (f'MultiView(num_views={self.num_views}, '
                f'transforms={self.transforms!r})')


@TRANSFORMS.register_module()
class OnViews:
    """Inside :class:`MultiView`'s ``transforms``: run ``transforms`` on
    the views numbered ``views`` (0-based) only, e.g. masks on the
    student's view and none on the teacher's (iBOT / Sonata: an EMA
    teacher)::

        dict(type='MultiView', num_views=2, transforms=[
            ...augmentations,
            dict(type='OnViews', views=(0, ),
                 transforms=[dict(type='RandomPatchMask', ratio=0.4)]),
        ])

    Args:
        views: the view numbers (ints >= 0) that go through ``transforms``;
            the others pass unchanged.
        transforms: ``TRANSFORMS`` configs.
    """

    def __init__(self, views: Sequence[int] = (0, ),
                 transforms: Sequence = ()):
        views = tuple(views) if isinstance(views, (list, tuple)) else (views, )
        if not views or not all(isinstance(v, int) and not isinstance(
                v, bool) and v >= 0 for v in views):
            raise ValueError(f'OnViews: views must be view numbers (ints >= '
                             f'0), got {views!r}')
        self.views = views
        self.transforms = _build(transforms)

    def __call__(self, results: dict) -> dict:
        if 'view_index' not in results:
            raise KeyError('OnViews runs inside MultiView (it reads the '
                           "view's number, view_index): put it in "
                           "MultiView's transforms")
        if results['view_index'] in self.views:
            results = self.transforms(results)
        return results

    def __repr__(self):
        return (f'OnViews(views={self.views!r}, '
                f'transforms={self.transforms!r})')


@TRANSFORMS.register_module()
class MultiCrop:
    """Groups of views, each group with its own transforms: the global
    and local crops of self-distillation.

    ``groups[0]`` makes views ``1..n_0``, ``groups[1]`` the next ``n_1``,
    and so on; view ``v`` (0-based over all groups) is made as in
    :class:`MultiView`, from float32 copies of the scene's point
    attributes and the generator of ``(seed_key, v)``, so a sample's views
    are a pure function of ``(seed, epoch, index)``. A group's transforms
    usually start with :class:`~dbbd.datasets.transforms.RandomPointCrop`
    (its ``ratio`` sets the group's extent), whose ``index`` maps each
    view point to its scene point; views then hold different numbers of
    points. Example (two global views, masked for the student, and four
    local ones)::

        dict(type='MultiCrop', groups=[
            dict(num_views=2, transforms=[
                dict(type='RandomPointCrop', ratio=(0.4, 1.0)), *augment,
                dict(type='RandomPatchMask', ratio=0.4, patch_size=0.1)]),
            dict(num_views=4, transforms=[
                dict(type='RandomPointCrop', ratio=(0.05, 0.4)), *augment]),
        ])

    Args:
        groups: ``dict(num_views=int >= 1, transforms=[...])`` each.

    Adds ``results['views']``, a list of ``sum(num_views)`` dicts.
    """

    def __init__(self, groups: Sequence[dict]):
        if not isinstance(groups, (list, tuple)) or not groups:
            raise ValueError(f'MultiCrop: groups must be a non-empty list of '
                             f'dict(num_views=..., transforms=[...]), got '
                             f'{groups!r}')
        self.groups = []
        for i, group in enumerate(groups):
            extra = set(group) - {'num_views', 'transforms'} if isinstance(
                group, dict) else None
            num = group.get('num_views') if isinstance(group, dict) else None
            if extra or isinstance(num, bool) or not isinstance(
                    num, int) or num < 1:
                raise ValueError(
                    f'MultiCrop: groups[{i}] must be dict(num_views=int >= '
                    f'1, transforms=[...]), got {group!r}')
            self.groups.append((num, _build(group.get('transforms', ()))))

    @property
    def num_views(self) -> int:
        return sum(n for n, _ in self.groups)

    def __call__(self, results: dict) -> dict:
        views = []
        for num, transforms in self.groups:
            views += [_make_view(results, transforms, len(views) + v)
                      for v in range(num)]
        results['views'] = views
        return results

    def __repr__(self):
        groups = ', '.join(f'({n} views: {t!r})' for n, t in self.groups)
        return f'MultiCrop(groups=[{groups}])'


@TRANSFORMS.register_module()
class PackDBBDInputs:
    """Assemble a sample for :func:`~dbbd.datasets.dbbd_collate`.

    Per view (``results['views']``, else the top-level attributes as one
    view) ``dict(coord (N, 3) float32, feat (N, C) float32)`` where ``feat``
    concatenates ``feat_keys`` in order, ``C`` = :func:`feature_channels`
    (a per-point scalar such as ``intensity (N,)`` is one column), and
    ``mask (N_v,)`` bool when a masking transform marked points, and
    ``index (N_v,)`` int64 (each view point's scene row) after a crop
    (:class:`~dbbd.datasets.transforms.RandomPointCrop`; a view without
    it has the scene's N points in order); plus the tree arrays
    ``point_region (L, N)``, ``region_parent (R,)``, ``region_center
    (R,)``, ``level_offset (L + 1,)``, ``segment (N,)`` (-1 where
    unlabelled), ``scene_id``, ``num_points`` and ``sample_seed``.

    After :class:`~dbbd.datasets.transforms.GridSample` (no tree arrays):
    no tree entries, and ``inverse (N_full,)`` and ``origin_segment
    (N_full,)`` that carry predictions back to the scene's every point.

    Args:
        feat_keys: any of ``'normal'`` (default), ``'color'`` (put
            ``NormalizeColor`` in the view transforms), ``'coord'``,
            ``'intensity'`` (1 channel; put ``NormalizeIntensity`` in the
            view transforms).

    Raises:
        ValueError: one line naming the scene, when it lacks an attribute
            ``feat_keys`` asks for (no colour, no intensity).
    """

    def __init__(self, feat_keys: Sequence[str] = ('normal', )):
        self.feat_keys = tuple(feat_keys)
        self.in_channels = feature_channels(self.feat_keys)

    def _feat(self, view, where):
        missing = [k for k in self.feat_keys if view.get(k) is None]
        if missing:
            k = missing[0]
            hint = _MISSING_HINT.get(
                k, 'drop it from feat_keys or prepare the data with that '
                'attribute')
            raise ValueError(
                f'{where}: feat_keys asks for {k!r} but the scene has no '
                f'{k}; {hint}')
        n = int(np.asarray(view['coord']).shape[0])
        return np.ascontiguousarray(np.concatenate(
            [np.asarray(view[k], dtype=np.float32).reshape(
                n, FEATURE_CHANNELS[k]) for k in self.feat_keys], axis=1))

    def __call__(self, results: dict) -> dict:
        where = results.get('scene_dir', results.get('scene_id', 'scene'))
        views = results.get('views') or [results]
        # the scene's points (a cropped view may hold fewer)
        n = int(np.asarray(results['coord'] if results.get('coord') is not
                           None else views[0]['coord']).shape[0])
        segment = results.get('segment')
        sample = dict(
            scene_id=results['scene_id'],
            num_points=n,
            segment=(np.full(n, -1, np.int64) if segment is None else
                     np.asarray(segment, dtype=np.int64)),
            sample_seed=int(results.get('sample_seed', 0)),
        )
        if results.get('point_region') is not None:
            for key in TREE_KEYS:
                sample[key] = np.asarray(results[key])
        if results.get('inverse') is not None:
            n_full = int(results['inverse'].shape[0])
            origin = results.get('origin_segment')
            sample['inverse'] = np.asarray(results['inverse'], np.int64)
            sample['origin_segment'] = (
                np.full(n_full, -1, np.int64) if origin is None else
                np.asarray(origin, dtype=np.int64))
        for v, view in enumerate(views):
            packed = dict(
                coord=np.ascontiguousarray(view['coord'], dtype=np.float32),
                feat=self._feat(view, where))
            if view.get('mask') is not None:  # RandomPatchMask, crops
                packed['mask'] = np.asarray(view['mask'], dtype=bool)
            if view.get('index') is not None:  # RandomPointCrop
                packed['index'] = np.asarray(view['index'], dtype=np.int64)
            elif packed['coord'].shape[0] != n:
                raise ValueError(
                    f'{where}: view {v + 1} has {packed["coord"].shape[0]} '
                    f'points and no index, the scene {n}; a transform that '
                    'drops points must record index (as RandomPointCrop '
                    'does)')
            sample[f'view{v + 1}'] = packed
        return sample

    def __repr__(self):
        return f'PackDBBDInputs(feat_keys={self.feat_keys!r})'


def _packers(dataset_cfg):
    for t in (dataset_cfg or {}).get('pipeline', None) or []:
        if isinstance(t, dict) and str(t.get('type', '')).startswith('Pack'):
            yield t


def pipeline_feat_keys(dataset_cfg):
    """``feat_keys`` of a dataset config's packing transform (None when it
    has none)."""
    for t in _packers(dataset_cfg):
        return tuple(t.get('feat_keys', ('normal', )))
    return None


def _width_holders(cfg):
    """(name, dict) of the model parts that declare the raw feature width:
    ``model.backbone`` and/or ``model`` (SceneContrast), where they have an
    ``in_channels``."""
    model = cfg.get('model') or {}
    out = []
    backbone = model.get('backbone')
    if isinstance(backbone, dict) and 'in_channels' in backbone:
        out.append(('model.backbone.in_channels', backbone))
    if 'in_channels' in model:
        out.append(('model.in_channels', model))
    return out


def set_feat_keys(cfg, feat_keys) -> int:
    """Make ``feat_keys`` the point features of a whole config: the packing
    transform of every loader's dataset, and the model's input width
    (``model.backbone.in_channels`` and/or ``model.in_channels``).

    Returns:
        the input width, :func:`feature_channels` of ``feat_keys`` (e.g. 7
        for ``('color', 'normal', 'intensity')``).
    """
    if isinstance(feat_keys, str):
        feat_keys = (feat_keys, )
    feat_keys = tuple(feat_keys)
    width = feature_channels(feat_keys)
    cfg['feat_keys'] = feat_keys
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        for t in _packers(dataset):
            t['feat_keys'] = feat_keys
    for _, holder in _width_holders(cfg):
        holder['in_channels'] = width
    return width


def _transform_types(pipeline):
    """Short type names of a pipeline's transforms, those inside
    ``MultiView(transforms=...)`` and ``MultiCrop(groups=[dict(
    transforms=...)])`` included."""
    for t in pipeline or []:
        if isinstance(t, dict):
            yield str(t.get('type', '')).split('.')[-1]
            yield from _transform_types(t.get('transforms'))
            for group in t.get('groups') or []:
                if isinstance(group, dict):
                    yield from _transform_types(group.get('transforms'))


def check_feat_width(cfg):
    """ValueError (one line) when a loader's ``feat_keys`` and the model's
    input width disagree, or ``feat_keys`` has ``'intensity'`` and the
    loader's pipeline has no ``NormalizeIntensity`` (raw intensity is on
    the sensor's scale, up to 65535)."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dataset = (cfg.get(loader) or {}).get('dataset')
        keys = pipeline_feat_keys(dataset)
        if keys and 'intensity' in keys and 'NormalizeIntensity' not in \
                set(_transform_types(dataset.get('pipeline'))):
            raise ValueError(
                f'{loader}: feat_keys {keys!r} has \'intensity\' but the '
                "pipeline has no NormalizeIntensity; add dict(type="
                "'NormalizeIntensity') to the view transforms (next to "
                'NormalizeColor)')
    for where, holder in _width_holders(cfg):
        width = holder['in_channels']
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader'):
            keys = pipeline_feat_keys((cfg.get(loader) or {}).get('dataset'))
            if keys is not None and feature_channels(keys) != width:
                raise ValueError(
                    f'{loader}: feat_keys {keys!r} make '
                    f'{feature_channels(keys)} input channels but {where} is '
                    f'{width}; set the top-level feat_keys (e.g. '
                    '--cfg-options "feat_keys=(\'normal\',\'color\')"), which '
                    'sets both')
