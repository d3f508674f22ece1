"""A config as the command line makes it: ``--cfg-options`` applied the way
``tools/train.py``, ``tools/test.py`` and the transfer table all read them.
"""
from typing import Optional

__all__ = ['apply_options', 'check_config', 'load_config']


def apply_options(cfg, options: Optional[dict] = None):
    """Apply ``--cfg-options`` to ``cfg`` in place and return it.

    ``data_root=`` sets the data root of every loader, ``feat_keys=`` the
    point features of every loader and the model's input width,
    ``num_classes=`` and ``pretrained=`` the whole config (top-level keys,
    :func:`~dbbd.models.segmentors.config.apply_top_level`); every other key
    is merged as it is. The config's own top-level ``num_classes`` /
    ``pretrained`` are copied to the places that use them even without
    options.

    Raises:
        ValueError: one line, a value that cannot work (naming the option).
    """
    from dbbd.models.segmentors.config import apply_top_level, pop_top_level
    opts = dict(options or {})
    data_root = opts.pop('data_root', None)
    feat_keys = opts.pop('feat_keys', None)
    top_level = pop_top_level(opts)
    cfg.merge_from_dict(opts)
    if feat_keys is not None:
        from dbbd.datasets.formatting import set_feat_keys
        try:
            set_feat_keys(cfg, feat_keys)
        except ValueError as e:
            raise ValueError(f'--cfg-options feat_keys: {e}') from None
    if data_root is not None:
        cfg.data_root = data_root
        for loader in ('train_dataloader', 'val_dataloader',
                       'test_dataloader'):
            if cfg.get(loader) and 'dataset' in cfg[loader]:
                cfg[loader].dataset.data_root = data_root
    apply_top_level(cfg, **top_level)
    return cfg


def load_config(path: str, options: Optional[dict] = None):
    """``Config.fromfile(path)`` with :func:`apply_options`."""
    from mmengine.config import Config

    import dbbd  # noqa: F401  YAML configs read safely
    return apply_options(Config.fromfile(path), options)


def check_config(cfg):
    """Every check of a config that needs no data: each ``type`` registered
    and each key accepted
    (:func:`~dbbd.utils.config_check.check_config_types`), the common
    values' types and ranges
    (:func:`~dbbd.utils.config_check.check_config_values`), the
    segmentation datasets' arguments
    (:func:`~dbbd.datasets.config_check.check_seg_datasets`).

    Raises:
        ConfigError: one line naming the key.
    """
    from dbbd.datasets.config_check import check_seg_datasets
    from dbbd.utils.config_check import check_config_types, check_config_values
    check_config_types(cfg)
    check_config_values(cfg)
    check_seg_datasets(cfg)
