"""Check a config before anything is built, so mistakes fail in one line.

mmengine reports an unknown ``type`` as a bare ``KeyError`` with no close
name, and a dataset's type only when ``train()`` starts, after the model is
built. :func:`check_config_types` walks every section of a training config,
looks each ``type`` up in the registry that will build it and raises
:class:`ConfigError` naming the key, the value and the closest registered
names.
"""
import difflib
import os.path as osp

__all__ = ['ConfigError', 'check_config_types', 'check_data_exists']


class ConfigError(ValueError):
    """A config value that cannot work; the message is one line."""


def _registry_names(registry):
    names = set()
    reg = registry
    while reg is not None:
        reg.import_from_location()
        names.update(reg._module_dict.keys())
        reg = reg.parent
    for child in registry.children.values():
        child.import_from_location()
        names.update(child._module_dict.keys())
    return names


def _check(registry, cfg, key):
    if not isinstance(cfg, dict) or 'type' not in cfg:
        return
    t = cfg['type']
    if not isinstance(t, str):
        return  # a class given directly
    if registry.get(t) is not None:
        return
    name = t.split('.')[-1]
    close = difflib.get_close_matches(
        name, sorted(_registry_names(registry)), n=3, cutoff=0.6)
    hint = (f'did you mean {", ".join(repr(c) for c in close)}?'
            if close else 'no registered name is close')
    raise ConfigError(
        f'{key}: type {t!r} is not in the {registry.name!r} registry; '
        f'{hint} (a module of your own needs '
        "custom_imports = dict(imports=['your.module'])")


def _walk_model(registry, cfg, key):
    """Every ``type`` inside the model section is built through MODELS."""
    if isinstance(cfg, dict):
        _check(registry, cfg, key)
        for k, v in cfg.items():
            if k != 'init_cfg':
                _walk_model(registry, v, f'{key}.{k}')
    elif isinstance(cfg, (list, tuple)):
        for i, v in enumerate(cfg):
            _walk_model(registry, v, f'{key}[{i}]')


def check_config_types(cfg):
    """Raise :class:`ConfigError` for the first unknown ``type`` in ``cfg``.

    ``cfg`` is an mmengine ``Config``; ``custom_imports`` must already have
    been imported (``Config.fromfile`` does it).
    """
    import mmengine.runner  # noqa: F401  fills mmengine's root registries
    from dbbd import registry as R

    if cfg.get('model') is not None:
        _walk_model(R.MODELS, cfg.model, 'model')
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        dl = cfg.get(loader)
        if not dl:
            continue
        ds = dl.get('dataset', {})
        _check(R.DATASETS, ds, f'{loader}.dataset')
        for i, t in enumerate(ds.get('pipeline', []) or []):
            _check(R.TRANSFORMS, t, f'{loader}.dataset.pipeline[{i}]')
        _check(R.DATA_SAMPLERS, dl.get('sampler'), f'{loader}.sampler')
        _check(R.FUNCTIONS, dl.get('collate_fn'), f'{loader}.collate_fn')
    for name, hook in (cfg.get('default_hooks') or {}).items():
        _check(R.HOOKS, hook, f'default_hooks.{name}')
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        _check(R.HOOKS, hook, f'custom_hooks[{i}]')
    ow = cfg.get('optim_wrapper')
    if ow:
        _check(R.OPTIM_WRAPPERS, ow, 'optim_wrapper')
        _check(R.OPTIMIZERS, ow.get('optimizer'), 'optim_wrapper.optimizer')
    sched = cfg.get('param_scheduler')
    for i, s in enumerate(sched if isinstance(sched, (list, tuple)) else
                          [sched]):
        _check(R.PARAM_SCHEDULERS, s, f'param_scheduler[{i}]')
    for ev in ('val_evaluator', 'test_evaluator'):
        e = cfg.get(ev)
        for i, m in enumerate(e if isinstance(e, (list, tuple)) else [e]):
            _check(R.METRICS, m, ev if not isinstance(e, (list, tuple))
                   else f'{ev}[{i}]')
    vis = cfg.get('visualizer')
    if vis:
        _check(R.VISUALIZERS, vis, 'visualizer')
        for i, b in enumerate(vis.get('vis_backends') or []):
            _check(R.VISBACKENDS, b, f'visualizer.vis_backends[{i}]')
    _check(R.LOG_PROCESSORS, cfg.get('log_processor'), 'log_processor')
    for loop in ('train_cfg', 'val_cfg', 'test_cfg'):
        _check(R.LOOPS, cfg.get(loop), loop)


def check_data_exists(cfg):
    """Raise ``DataPreparationError`` early when a split folder is missing.

    Datasets with ``auto_prepare`` (the demo) prepare their data themselves.
    """
    from dbbd.datasets.dbbd_dataset import (DataPreparationError,
                                            _prepare_hint)
    for loader in ('train_dataloader', 'val_dataloader'):
        ds = (cfg.get(loader) or {}).get('dataset') or {}
        if ds.get('type') not in ('DBBDDataset', 'dbbd.DBBDDataset'):
            continue
        if ds.get('auto_prepare') is not None:
            continue
        root = ds.get('data_root')
        split_dir = osp.join(str(root), ds.get('split', 'train'))
        if not osp.isdir(split_dir):
            raise DataPreparationError(
                f'{loader}.dataset: split folder {split_dir} does not exist; '
                f'{_prepare_hint(root)}')
