"""Check a config before anything is built, so mistakes fail in one line.

mmengine reports an unknown ``type`` as a bare ``KeyError`` with no close
name, and a dataset's type only when ``train()`` starts, after the model is
built. :func:`check_config_types` walks every section of a training config,
looks each ``type`` up in the registry that will build it and raises
:class:`ConfigError` naming the key, the value and the closest registered
names. :func:`check_config_values` checks the types and ranges of the keys
users most often get wrong (a string where a number belongs, say).
"""
import difflib
import math
import numbers
import os.path as osp

__all__ = [
    'ConfigError', 'check_config_types', 'check_config_values',
    'check_data_exists'
]


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


# ---------------------------------------------------------------------------
# Value types
# ---------------------------------------------------------------------------

_MISSING = object()


def _lookup(cfg, dotted):
    """``cfg['a']['b']`` for ``'a.b'``; ``_MISSING`` when a level is absent
    or not a dict."""
    head, *rest = dotted.split('.')
    # an mmengine Config is not a dict, but has get(); its sections are
    # ConfigDicts
    node = cfg.get(head, _MISSING)
    for part in rest:
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _is_int(value):
    # bool is an int subclass, but max_epochs=True is a mistake
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _parses_as_number(text):
    try:
        float(text.strip())
    except ValueError:
        return False
    return True


# (test, description of what is expected); None is only accepted where the
# description says so.
_POSITIVE_INT = (lambda v: _is_int(v) and v > 0, 'a positive int')
_NON_NEGATIVE_INT = (lambda v: _is_int(v) and v >= 0, 'an int >= 0')
# NaN fails ``v >= 0``; infinity (lr=inf makes every weight non-finite
# after one step) is refused explicitly
_NON_NEGATIVE_NUMBER = (lambda v: _is_number(v) and math.isfinite(v) and
                        v >= 0, 'a finite number >= 0')
_INT = (_is_int, 'an int')
_POSITIVE_INT_OR_NONE = (lambda v: v is None or (_is_int(v) and v > 0),
                         'a positive int or None')
_NON_NEGATIVE_INT_OR_NONE = (lambda v: v is None or (_is_int(v) and v >= 0),
                             'an int >= 0 or None')
# mmengine's CheckpointHook: interval=-1 disables periodic saving (only
# save_last / save_best then).
_CKPT_INTERVAL = (lambda v: _is_int(v) and (v > 0 or v == -1),
                  'a positive int (or -1: no periodic checkpoints)')


def _value_rules():
    """(dotted key, rule, extra hint) for every checked key."""
    rules = [
        ('train_cfg.max_epochs', _POSITIVE_INT, ''),
        ('train_cfg.max_iters', _POSITIVE_INT, ''),
        ('train_cfg.val_interval', _POSITIVE_INT, ''),
        ('optim_wrapper.optimizer.lr', _NON_NEGATIVE_NUMBER, ''),
        ('optim_wrapper.optimizer.weight_decay', _NON_NEGATIVE_NUMBER, ''),
        ('randomness.seed', _INT,
         'a run without a fixed seed cannot be resumed exactly'),
        ('default_hooks.checkpoint.interval', _CKPT_INTERVAL, ''),
    ]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        rules += [
            (f'{loader}.batch_size', _POSITIVE_INT, ''),
            (f'{loader}.num_workers', _NON_NEGATIVE_INT, ''),
            (f'{loader}.dataset.max_scenes', _POSITIVE_INT_OR_NONE, ''),
            (f'{loader}.dataset.max_depth', _NON_NEGATIVE_INT_OR_NONE, ''),
        ]
    return rules


def check_config_values(cfg):
    """Raise :class:`ConfigError` for the first common key whose value has
    the wrong type or range.

    Checked (where present; absent keys are left to their defaults):
    ``train_cfg.max_epochs`` / ``max_iters`` / ``val_interval`` (positive
    int), ``*_dataloader.batch_size`` (positive int),
    ``*_dataloader.num_workers`` (int >= 0),
    ``*_dataloader.dataset.max_scenes`` (positive int or None),
    ``*_dataloader.dataset.max_depth`` (int >= 0 or None),
    ``optim_wrapper.optimizer.lr`` / ``weight_decay`` (finite number >= 0),
    ``randomness.seed`` (int), ``default_hooks.checkpoint.interval``
    (positive int, or -1). Booleans are not accepted as numbers, and a
    number written as a string (``lr='1e-3'``) gets a message saying to
    write it without quotes.

    The message is one line: the key, the value (with its type) and what
    is expected. ``cfg`` is an mmengine ``Config`` (or a plain dict).
    """
    for key, (ok, expected), hint in _value_rules():
        value = _lookup(cfg, key)
        if value is _MISSING or ok(value):
            continue
        name = key.rsplit('.', 1)[-1]
        if isinstance(value, str) and _parses_as_number(value):
            advice = (f'write a number, without quotes: {name}='
                      f'{value.strip()}')
        elif isinstance(value, bool):
            advice = f'{value} is a bool, not a number'
        elif hint:
            advice = hint
        else:
            advice = ''
        raise ConfigError(
            f'{key}: got {value!r} ({type(value).__name__}); expected '
            f'{expected}' + (f'; {advice}' if advice else ''))
