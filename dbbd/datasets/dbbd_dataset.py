"""The dataset of prepared scenes, serving one or two augmented views."""
import copy
import os.path as osp
import warnings

import numpy as np
from mmengine.dataset import BaseDataset, Compose

from dbbd.registry import DATASETS, TRANSFORMS
from .errors import DataPreparationError
from .region_tree import truncate_tree

__all__ = ['DBBDDataset', 'DataPreparationError']


def _prepare_hint(data_root):
    return ('prepare it with `python tools/create_data.py --src '
            f'<your ScanNet folder> --out {data_root}` (see README, '
            '"Prepare data")')


def prepared_scenes(split_dir, data_root, who):
    """The prepared scene folders of ``split_dir``; the one-line
    :class:`DataPreparationError` naming ``who`` (the dataset or its config
    key) when the folder is missing or holds none."""
    from .scene_io import list_prepared
    if not osp.isdir(split_dir):
        raise DataPreparationError(
            f'{who}: split folder {split_dir} does not exist; '
            f'{_prepare_hint(data_root)}')
    # finished scenes only: skips folders of interrupted writes
    scenes = list_prepared(split_dir)
    if not scenes:
        raise DataPreparationError(
            f'{who}: split folder {split_dir} holds no prepared scene (no '
            f'<scene>/meta.json); {_prepare_hint(data_root)}')
    return scenes


@DATASETS.register_module()
class DBBDDataset(BaseDataset):
    """Scenes prepared by ``tools/create_data.py``, with their region trees.

    Args:
        data_root: folder holding ``train/``, ``val/``, ``test/``.
        split: which split folder to read.
        max_scenes: keep only the first ``max_scenes`` scenes (sorted by
            id); a value larger than the split warns and keeps them all.
        max_depth: truncate trees at load time to levels ``0..max_depth``.
        pipeline: transforms (``TRANSFORMS`` configs) applied to the scene
            dict, ending with ``PackDBBDInputs``; two views for the
            contrastive loss come from ``MultiView(num_views=2, ...)`` (see
            :mod:`dbbd.datasets.formatting`).
        seed: base seed used when indexed with a plain int (no sampler).
        auto_prepare: optional ``dict(num_train=..., num_val=...,
            num_points=..., seed=..., **tree_options)``: when the split is
            absent, generate synthetic rooms and prepare them into
            ``data_root`` first (the demo config uses this).
        metainfo: mmengine's; ``dict(classes=(...))`` names the label
            classes for the metrics (``dataset_meta``); without it the
            metrics use their ``class_names`` or number the classes.

    The pipeline receives ``scene_id``, ``scene_dir``, ``coord (N, 3)``,
    ``normal (N, 3)``, ``color (N, 3)`` or None, ``intensity (N,)`` or None
    (the source's scale), ``segment (N,)`` or None,
    the tree arrays ``point_region (L, N)``, ``region_parent (R,)``,
    ``region_center (R,)``, ``level_offset (L + 1,)``, ``seed_key`` (the
    ``(seed, epoch, index)`` all augmentation randomness derives from) and
    ``sample_seed``. Its output (``PackDBBDInputs``) is the input of
    :func:`dbbd_collate`.
    """

    # No class names by default: a dataset names its classes with
    # ``metainfo=dict(classes=(...))`` (what metrics show), and prepared
    # scenes may hold any label set, so none is assumed.
    METAINFO: dict = dict()

    def __init__(self,
                 data_root,
                 split='train',
                 max_scenes=None,
                 max_depth=None,
                 pipeline=(),
                 seed=0,
                 auto_prepare=None,
                 **kwargs):
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
        last = self.pipeline.transforms[-1] if \
            self.pipeline.transforms else None
        if not type(last).__name__.startswith('Pack'):
            raise ValueError(
                'DBBDDataset: the pipeline must end with a packing transform '
                "(dict(type='PackDBBDInputs', feat_keys=...)), got "
                f'{type(last).__name__ if last is not None else "none"}')

    def load_data_list(self):
        split_dir = osp.join(self.data_root, self.split)
        if not osp.isdir(split_dir) and self.auto_prepare is not None:
            from .demo import prepare_demo_data
            prepare_demo_data(self.data_root, **self.auto_prepare)
        scenes = [osp.basename(p) for p in prepared_scenes(
            split_dir, self.data_root, 'DBBDDataset')]
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
        return scene, tree

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
        results = dict(
            scene_id=info['scene_id'],
            scene_dir=info['scene_dir'],
            coord=scene['coord'],
            normal=scene['normal'],
            color=scene.get('color'),
            intensity=scene.get('intensity'),
            segment=scene.get('segment'),
            point_region=np.asarray(tree.point_region),
            region_parent=np.asarray(tree.region_parent),
            region_center=np.asarray(tree.region_center),
            level_offset=np.asarray(tree.level_offset),
            seed_key=(seed, epoch, idx),
            sample_seed=int(
                np.random.SeedSequence([seed, epoch, idx, 2]).generate_state(
                    1, np.uint32)[0]),
        )
        return self.pipeline(results)

    def index_of(self, scene_id: str) -> int:
        """Position of ``scene_id`` in the dataset (ValueError if absent)."""
        if not self._fully_initialized:
            self.full_init()
        for i, info in enumerate(self.data_list):
            if info['scene_id'] == scene_id:
                return i
        raise ValueError(f'scene {scene_id} is not in {self.data_root}/'
                         f'{self.split} (or beyond max_scenes)')

    def get_data_info(self, idx):
        return copy.copy(self.data_list[idx])
