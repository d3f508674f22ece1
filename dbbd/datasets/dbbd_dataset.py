"""The dataset of prepared scenes, serving one or two augmented views."""
import copy
import os.path as osp
import warnings

import numpy as np
from mmengine.dataset import BaseDataset, Compose

from dbbd.registry import DATASETS, TRANSFORMS
from .region_tree import truncate_tree

__all__ = ['DBBDDataset', 'DataPreparationError']

_FEATURE_CHANNELS = dict(normal=3, color=3, coord=3)


class DataPreparationError(FileNotFoundError):
    """A split is missing or empty; the message says which command fixes it.
    """


def _prepare_hint(data_root):
    return ('prepare it with `python tools/create_data.py --src '
            f'<your ScanNet folder> --out {data_root}` (see README, '
            '"Prepare data")')


@DATASETS.register_module()
class DBBDDataset(BaseDataset):
    """Scenes prepared by ``tools/create_data.py``, with their region trees.

    Args:
        data_root: folder holding ``train/``, ``val/``, ``test/``.
        split: which split folder to read.
        max_scenes: keep only the first ``max_scenes`` scenes (sorted by
            id); a value larger than the split warns and keeps them all.
        max_depth: truncate trees at load time to levels ``0..max_depth``.
        feat_keys: point features, concatenated in this order; any of
            ``'normal'`` (default), ``'color'`` (put ``NormalizeColor`` in the
            pipeline), ``'coord'``.
        pipeline: transforms (``TRANSFORMS`` configs) applied to each view.
        dual_view: two independently augmented views (training and
            validation of the contrastive loss) or one (``mode='tensor'``).
        seed: base seed used when indexed with a plain int (no sampler).
        auto_prepare: optional ``dict(num_train=..., num_val=...,
            num_points=..., seed=..., **tree_options)``: when the split is
            absent, generate synthetic rooms and prepare them into
            ``data_root`` first (the demo config uses this).

    A sample (input of :func:`dbbd_collate`) holds ``view1`` (and ``view2``)
    ``dict(coord (N, 3), feat (N, C))``, the tree arrays ``point_region
    (L, N)``, ``region_parent (R,)``, ``region_center (R,)``,
    ``level_offset (L + 1,)``, ``segment (N,)``, ``scene_id``,
    ``num_points`` and ``sample_seed``.
    """

    METAINFO = dict(classes=(
        'wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table', 'door',
        'window', 'bookshelf', 'picture', 'counter', 'desk', 'curtain',
        'refrigerator', 'shower curtain', 'toilet', 'sink', 'bathtub',
        'otherfurniture'))

    def __init__(self,
                 data_root,
                 split='train',
                 max_scenes=None,
                 max_depth=None,
                 feat_keys=('normal', ),
                 pipeline=(),
                 dual_view=True,
                 seed=0,
                 auto_prepare=None,
                 **kwargs):
        for k in feat_keys:
            if k not in _FEATURE_CHANNELS:
                raise ValueError(
                    f'DBBDDataset: unknown feat_keys entry {k!r}; use any of '
                    f'{sorted(_FEATURE_CHANNELS)}')
        if max_scenes is not None and (not isinstance(max_scenes, int)
                                       or max_scenes < 1):
            raise ValueError('DBBDDataset: max_scenes must be a positive int '
                             f'or None, got {max_scenes!r}')
        if max_depth is not None and (not isinstance(max_depth, int)
                                      or max_depth < 0):
            raise ValueError('DBBDDataset: max_depth must be an int >= 0 or '
                             f'None, got {max_depth!r}')
        self.split = split
        self.max_scenes = max_scenes
        self.max_depth = max_depth
        self.feat_keys = tuple(feat_keys)
        self.dual_view = dual_view
        self.seed = seed
        self.auto_prepare = auto_prepare
        kwargs.setdefault('serialize_data', False)
        super().__init__(data_root=data_root, pipeline=[], **kwargs)
        # Built here (not by BaseDataset) so that the project's transforms
        # resolve whether or not a default scope is set.
        self.pipeline = Compose([
            TRANSFORMS.build(t) if isinstance(t, dict) else t
            for t in pipeline
        ])

    @property
    def in_channels(self):
        return sum(_FEATURE_CHANNELS[k] for k in self.feat_keys)

    def load_data_list(self):
        split_dir = osp.join(self.data_root, self.split)
        if not osp.isdir(split_dir) and self.auto_prepare is not None:
            from .demo import prepare_demo_data
            prepare_demo_data(self.data_root, **self.auto_prepare)
        if not osp.isdir(split_dir):
            raise DataPreparationError(
                f'DBBDDataset: split folder {split_dir} does not exist; '
                f'{_prepare_hint(self.data_root)}')
        from .scene_io import list_prepared

        # finished scenes only: skips folders of interrupted writes
        scenes = [osp.basename(p) for p in list_prepared(split_dir)]
        if not scenes:
            raise DataPreparationError(
                f'DBBDDataset: split folder {split_dir} holds no prepared '
                f'scene (no <scene>/meta.json); {_prepare_hint(self.data_root)}'
            )
        if self.max_scenes is not None:
            if self.max_scenes > len(scenes):
                warnings.warn(
                    f'DBBDDataset: max_scenes={self.max_scenes} is larger '
                    f'than the {len(scenes)} scenes of {split_dir}; using '
                    'all of them')
            scenes = scenes[:self.max_scenes]
        return [
            dict(scene_id=s, scene_dir=osp.join(split_dir, s)) for s in scenes
        ]

    def _load(self, info):
        from .scene_io import load_scene
        scene = load_scene(info['scene_dir'], mmap=True, check=True)
        tree = truncate_tree(scene['tree'], self.max_depth)
        for k in self.feat_keys:
            if k != 'coord' and scene.get(k) is None:
                raise ValueError(
                    f'{info["scene_dir"]}: feat_keys asks for {k!r} but the '
                    f'scene has no {k}; drop it from feat_keys or prepare '
                    'the data with that attribute')
        return scene, tree

    def _view(self, scene, rng):
        results = dict(
            coord=np.array(scene['coord'], dtype=np.float32),
            normal=np.array(scene['normal'], dtype=np.float32),
            color=None if scene.get('color') is None else np.array(
                scene['color'], dtype=np.float32),
            rng=rng)
        results = self.pipeline(results)
        feat = np.concatenate(
            [np.asarray(results[k], dtype=np.float32) for k in self.feat_keys],
            axis=1)
        return dict(coord=np.ascontiguousarray(results['coord'],
                                               dtype=np.float32),
                    feat=np.ascontiguousarray(feat))

    def __getitem__(self, index):
        """``index``: an int, or ``(index, epoch, seed)`` from
        :class:`EpochSeedSampler`."""
        if not self._fully_initialized:
            self.full_init()
        if isinstance(index, (tuple, list)):
            idx, epoch, seed = (int(v) for v in index)
        else:
            idx, epoch, seed = int(index), 0, int(self.seed)
        info = self.get_data_info(idx)
        scene, tree = self._load(info)
        n = int(tree.point_region.shape[1])
        sample = dict(
            scene_id=info['scene_id'],
            num_points=n,
            point_region=np.asarray(tree.point_region),
            region_parent=np.asarray(tree.region_parent),
            region_center=np.asarray(tree.region_center),
            level_offset=np.asarray(tree.level_offset),
            segment=(np.full(n, -1, np.int64) if scene.get('segment') is None
                     else np.asarray(scene['segment'], dtype=np.int64)),
            sample_seed=int(
                np.random.SeedSequence([seed, epoch, idx, 2]).generate_state(
                    1, np.uint32)[0]),
        )
        for v in range(2 if self.dual_view else 1):
            rng = np.random.default_rng([seed, epoch, idx, v])
            sample[f'view{v + 1}'] = self._view(scene, rng)
        return sample

    def get_data_info(self, idx):
        return copy.copy(self.data_list[idx])
