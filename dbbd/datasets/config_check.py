"""Config checks that need the datasets, run before anything is built.

:func:`check_seg_datasets` checks the segmentation datasets' arguments,
:func:`check_labelled_subset` the label-efficient options against the
prepared split, :func:`check_data_exists` that every split is prepared.
Each raises one line (:class:`~dbbd.utils.config_check.ConfigError` or
:class:`~dbbd.datasets.errors.DataPreparationError`) naming the key. The
checks of types and values that need no dataset are in
:mod:`dbbd.utils.config_check`; :func:`dbbd.apis.config.check_config` runs
both.
"""
import os.path as osp

from dbbd.registry import DATASETS
from dbbd.utils.config_check import ConfigError

from .dbbd_dataset import DBBDDataset, prepared_scenes
from .demo import check_demo_target
from .scene_io import read_meta
from .seg_dataset import (LABEL_EFFICIENT_KEYS, SegDataset, check_seg_args,
                          plan_labelled_subset)

__all__ = ['check_seg_datasets', 'check_labelled_subset', 'check_data_exists']


def _is_prepared_dataset(type_name):
    """Whether a dataset type reads the prepared format (DBBDDataset or a
    subclass such as SegDataset)."""
    cls = DATASETS.get(type_name) if isinstance(type_name, str) else type_name
    return isinstance(cls, type) and issubclass(cls, DBBDDataset)


def _dbbd_datasets(cfg):
    """(loader, dataset config) of the DBBD datasets of the training and
    validation loaders."""
    for loader in ('train_dataloader', 'val_dataloader'):
        ds = (cfg.get(loader) or {}).get('dataset') or {}
        if _is_prepared_dataset(ds.get('type')):
            yield loader, ds


def _is_seg_dataset(type_name):
    try:
        cls = DATASETS.get(type_name) if isinstance(type_name, str) \
            else type_name
    except KeyError:
        return False
    return isinstance(cls, type) and issubclass(cls, SegDataset)


def check_seg_datasets(cfg):
    """The segmentation datasets' arguments, before anything is read: the
    label-efficient options (``labelled_fraction``, ``labelled_scenes``,
    ``labelled_points``) in range and not contradicting each other on the
    training dataset, and absent from the validation and test datasets
    (which score every labelled point). :class:`ConfigError`, one line
    naming the key."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = (cfg.get(loader) or {}).get('dataset') or {}
        if not isinstance(ds, dict) or not _is_seg_dataset(ds.get('type')):
            continue
        key = f'{loader}.dataset'
        if loader != 'train_dataloader':
            for name in LABEL_EFFICIENT_KEYS:
                if ds.get(name) is not None:
                    raise ConfigError(
                        f'{key}.{name}: got {ds[name]!r}; label-efficient '
                        'options apply to the training dataset only '
                        '(validation and test score every labelled point); '
                        f'set train_dataloader.dataset.{name} instead and '
                        f'remove {key}.{name}')
        args = {k: ds[k] for k in ('num_classes', 'label_seed') +
                LABEL_EFFICIENT_KEYS if k in ds}
        check_seg_args(key, **args)


def check_labelled_subset(cfg):
    """The training dataset's label-efficient options against its data:
    ``labelled_scenes`` larger than the split, or ``labelled_points`` at or
    above every scene's labelled points, raise :class:`ConfigError` (one
    line naming the key). Reads the split's ``meta.json`` files; a demo
    split that is not prepared yet is left to the dataset."""
    ds = (cfg.get('train_dataloader') or {}).get('dataset') or {}
    if not isinstance(ds, dict) or not _is_seg_dataset(ds.get('type')) or \
            all(ds.get(k) is None for k in LABEL_EFFICIENT_KEYS):
        return
    root, split = str(ds.get('data_root')), ds.get('split', 'train')
    split_dir = osp.join(root, split)
    if not osp.isdir(split_dir):
        return
    dirs = prepared_scenes(split_dir, root, 'train_dataloader.dataset')
    if ds.get('max_scenes') is not None:
        dirs = dirs[:ds['max_scenes']]
    plan_labelled_subset(
        'train_dataloader.dataset',
        [(osp.basename(d), read_meta(d)) for d in dirs],
        ds.get('labelled_fraction'), ds.get('labelled_scenes'),
        ds.get('labelled_points'), ds.get('label_seed', 0))


def check_data_exists(cfg):
    """Raise ``DataPreparationError`` (one line) when a split folder is
    missing or holds no prepared scene.

    A demo dataset (``auto_prepare``) whose folder is not prepared yet is
    checked only for being the demo's own folder
    (:func:`dbbd.datasets.demo.check_demo_target`); run
    :func:`dbbd.datasets.demo.prepare_configured_demo` first to check it
    fully.
    """
    for loader, ds in _dbbd_datasets(cfg):
        root, split = str(ds.get('data_root')), ds.get('split', 'train')
        split_dir = osp.join(root, split)
        if ds.get('auto_prepare') is not None:
            check_demo_target(root, ds['auto_prepare'].get('demo_root'),
                              split)
            if not osp.isdir(split_dir):
                continue  # prepared on first use
        prepared_scenes(split_dir, root, f'{loader}.dataset')
