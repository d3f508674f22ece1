"""Check a config before anything is built, so mistakes fail in one line.

mmengine reports an unknown ``type`` as a bare ``KeyError`` with no close
name, a dataset's type only when ``train()`` starts, after the model is
built, and a misspelt argument as a ``TypeError`` deep in a traceback.
:func:`check_config_types` walks every section of a training config, looks
each ``type`` up in the registry that will build it, and checks every other
key of that dict against the parameters of the class (or function) it
builds; it raises :class:`ConfigError` naming the key, what is accepted and
the closest names. :func:`check_config_values` checks the types and ranges
of the keys users most often get wrong (a string where a number belongs,
say). The checks that need the datasets (their arguments, the prepared
data) are in :mod:`dbbd.datasets.config_check`;
:func:`dbbd.apis.config.check_config` runs them all.

The ``check_*`` argument checks at the end are for constructors: a bad
width or temperature fails with one :class:`ConfigError` line naming the
class and the parameter, which ``tools/train.py`` prints as is.
"""
import difflib
import inspect
import math
import numbers

__all__ = [
    'ConfigError', 'check_config_types', 'check_config_values',
    'check_top_level_keys', 'READ_TOP_LEVEL_KEYS', 'CONFIG_VARIABLES',
    'accepted_parameters', 'check_int',
    'check_int_list', 'check_number'
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


def _check(registry, cfg, key, extra=()):
    """The ``type`` of ``cfg`` is registered and its other keys are
    parameters of what it builds (``extra``: keys the builder consumes
    itself)."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        return
    t = cfg['type']
    if not isinstance(t, str):
        _check_keys(t, cfg, key, extra)  # a class given directly
        return
    obj = registry.get(t)
    if obj is not None:
        _check_keys(obj, cfg, key, extra)
        return
    name = t.split('.')[-1]
    close = difflib.get_close_matches(
        name, sorted(_registry_names(registry)), n=3, cutoff=0.6)
    hint = (f'did you mean {", ".join(repr(c) for c in close)}?'
            if close else 'no registered name is close')
    raise ConfigError(
        f'{key}: type {t!r} is not in the {registry.name!r} registry; '
        f'{hint} (a module of your own needs '
        "custom_imports = dict(imports=['your.module']) in the config)")


_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD,
          inspect.Parameter.KEYWORD_ONLY)


def accepted_parameters(obj):
    """Names of the keyword arguments ``obj`` (a class or a function)
    accepts, or None when that cannot be known.

    A class's ``__init__`` that only forwards ``(*args, **kwargs)`` (as
    ``SafeCheckpointHook`` does to mmengine's hook) is looked through to the
    next class in the MRO; any other ``**kwargs`` makes the answer None.
    """
    if inspect.isclass(obj):
        import torch.nn as nn
        for klass in obj.__mro__:
            if klass in (object, nn.Module):
                return []  # both refuse unknown keyword arguments
            init = klass.__dict__.get('__init__')
            if init is None:
                continue
            try:
                params = list(inspect.signature(init).parameters.values())[1:]
            except (TypeError, ValueError):
                return None
            kinds = [p.kind for p in params]
            if kinds == [inspect.Parameter.VAR_POSITIONAL,
                         inspect.Parameter.VAR_KEYWORD]:
                continue  # forwards everything to the next class
            break
        else:
            return None
    else:
        try:
            params = list(inspect.signature(obj).parameters.values())
        except (TypeError, ValueError):
            return None
    if any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.kind in _NAMED]


def _check_keys(obj, cfg, key, extra=()):
    accepted = accepted_parameters(obj)
    if accepted is None:
        return
    owner = getattr(obj, '__name__', type(obj).__name__)
    allowed = set(accepted) | set(extra) | {'type', '_scope_'}
    for name in cfg:
        if name in allowed:
            continue
        close = difflib.get_close_matches(str(name), accepted, n=3,
                                          cutoff=0.6)
        hint = (f'did you mean {", ".join(repr(c) for c in close)}? '
                if close else '')
        raise ConfigError(
            f'{key}.{name}: {owner} has no parameter {name!r}; {hint}'
            f'it accepts {", ".join(accepted) if accepted else "none"}')


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
    """Raise :class:`ConfigError` for the first unknown ``type`` in ``cfg``,
    or the first key its class (or function) has no parameter for.

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
        _check(R.HOOKS, hook, f'default_hooks.{name}', _HOOK_KEYS)
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        _check(R.HOOKS, hook, f'custom_hooks[{i}]', _HOOK_KEYS)
    ow = cfg.get('optim_wrapper')
    if ow:
        _check(R.OPTIM_WRAPPERS, ow, 'optim_wrapper',
               ('constructor', 'paramwise_cfg'))
        _check(R.OPTIMIZERS, ow.get('optimizer'), 'optim_wrapper.optimizer')
    sched = cfg.get('param_scheduler')
    for i, s in enumerate(sched if isinstance(sched, (list, tuple)) else
                          [sched]):
        _check(R.PARAM_SCHEDULERS, s, f'param_scheduler[{i}]',
               ('convert_to_iter_based', ))
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


#: Keys ``Runner.register_hook`` takes out of a hook's config.
_HOOK_KEYS = ('priority', )


# ---------------------------------------------------------------------------
# Top-level keys
# ---------------------------------------------------------------------------

#: Top-level keys something reads after the config file is loaded:
#: mmengine's Runner (``Runner.from_cfg`` and the Runner itself) and DBBD
#: (``tools/train.py``, ``tools/test.py``, the segmentation top-level keys,
#: the distributed set-up).
READ_TOP_LEVEL_KEYS = frozenset({
    # mmengine's Runner
    'model', 'work_dir', 'train_dataloader', 'val_dataloader',
    'test_dataloader', 'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr',
    'optim_wrapper', 'param_scheduler', 'val_evaluator', 'test_evaluator',
    'default_hooks', 'custom_hooks', 'data_preprocessor', 'load_from',
    'resume', 'launcher', 'env_cfg', 'log_processor', 'log_level',
    'visualizer', 'default_scope', 'randomness', 'experiment_name',
    'model_wrapper_cfg', 'find_unused_parameters', 'compile', 'sync_bn',
    'efficient_conv_bn_eval', 'activation_checkpointing', 'custom_imports',
    # DBBD
    'data_root', 'feat_keys', 'num_classes', 'class_names', 'pretrained',
    'amp', 'tta_pipeline',
})

#: Variables of the shipped config files that only the files themselves
#: read (``max_epochs = 100`` then ``train_cfg = dict(max_epochs=...)``):
#: in a config file they are fine, on the command line they change nothing.
CONFIG_VARIABLES = frozenset({
    'dataset_type', 'demo_data', 'masking', 'max_epochs', 'train_pipeline',
    'ptv3', 'ptv3_small',  # configs/_base_/models/ptv3.py
    'train_view', 'val_pipeline', 'val_view', 'vis_backends',
    # the crops of the self-distillation configs
    'global_crop', 'local_crop', 'grid_size', 'view',
})


def _paths_named(node, name, prefix=''):
    """Dotted paths below ``node`` whose last part is ``name``."""
    if isinstance(node, dict):
        for k, v in node.items():
            path = f'{prefix}{k}'
            if k == name:
                yield path
            yield from _paths_named(v, name, f'{path}.')


def check_top_level_keys(cfg, config_path, file_keys, option_keys=()):
    """Refuse top-level keys that nothing reads, in one line
    (:class:`ConfigError`).

    Args:
        cfg: the config after ``--cfg-options`` were merged.
        config_path: the config file, for messages.
        file_keys: the top-level keys of the file as loaded (its
            ``_base_`` files included).
        option_keys: the top-level parts of the ``--cfg-options`` keys.

    Refused:

    - an option whose top-level key nothing reads: a new key
      (``foo_bar=1``, ``pretrianed=...``), with the close names;
    - an option that sets a variable of the config file (``max_epochs=5``):
      the file already used its value, so it would change nothing; the
      message names the keys that hold it (``train_cfg.max_epochs``);
    - a key of the file that nothing reads and is close to one that is
      read (``pretrianed = ...``, ``data_rot = ...``): a misspelt key that
      would be ignored. Other variables of a file stay allowed (a file may
      define and use its own).
    """
    read = READ_TOP_LEVEL_KEYS
    for key in option_keys:
        if key in read:
            continue
        if key in file_keys:
            holders = [p for p in _paths_named(
                {k: v for k, v in cfg.items() if k != key}, key)]
            shown = ', '.join(holders[:3]) + (
                f' (+{len(holders) - 3} more)' if len(holders) > 3 else '')
            hint = (f'set the key that holds it instead: {shown}'
                    if holders else 'set the keys that use it instead (see '
                    'the config file)')
            raise ConfigError(
                f'--cfg-options {key}: {key} is a variable of the config '
                f'file {config_path}, used when the file was read; setting '
                f'it here changes nothing; {hint}')
        close = difflib.get_close_matches(
            key, sorted(read | set(file_keys)), n=3, cutoff=0.6)
        hint = (f'did you mean {", ".join(repr(c) for c in close)}? '
                if close else '')
        raise ConfigError(
            f'--cfg-options {key}: no part of the config reads a top-level '
            f'key {key!r}; {hint}a nested key needs its full path (e.g. '
            'train_cfg.max_epochs=10)')
    for key in file_keys:
        if key in read or key in CONFIG_VARIABLES or key.startswith('_'):
            continue
        close = difflib.get_close_matches(key, sorted(read), n=1,
                                          cutoff=0.85)
        if close:
            raise ConfigError(
                f'{config_path}: top-level key {key!r} is read by nothing '
                f'and is close to {close[0]!r}, which is; did you mean '
                f'{close[0]!r}? (a variable the file uses itself needs a '
                'name not this close to a key that is read)')


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
#: The largest learning rate accepted. Learning rates are about 1e-4 to
#: 1 (AdamW 1e-3, SGD 0.1); much beyond 10 the first optimiser step
#: overflows float32 (AdamW's step of lr / (1 - beta1) is refused by torch
#: above about 3e37) or turns the weights non-finite.
MAX_LR = 10.0
_LR = (lambda v: _is_number(v) and math.isfinite(v) and 0 <= v <= MAX_LR,
       f'a finite number in [0, {MAX_LR:g}]')
_LR_HINT = ('learning rates are about 1e-4 to 1 (AdamW 1e-3); a larger one '
            'overflows or diverges in the first steps')
_INT = (_is_int, 'an int')
_POSITIVE_INT_OR_NONE = (lambda v: v is None or (_is_int(v) and v > 0),
                         'a positive int or None')
_NON_NEGATIVE_INT_OR_NONE = (lambda v: v is None or (_is_int(v) and v >= 0),
                             'an int >= 0 or None')
# PointSegmentor's class weights: none, computed from the training labels,
# or one weight per class
_CLASS_WEIGHT = (lambda v: v is None or (isinstance(v, str) and v == 'auto')
                 or (isinstance(v, (list, tuple)) and len(v) > 0 and all(
                     _is_number(x) and math.isfinite(x) and x >= 0
                     for x in v)),
                 "None, 'auto' or a list of finite numbers >= 0 (one per "
                 'class)')
# the loss terms of PointSegmentor: loss configs
_LOSS_LIST = (lambda v: v is None or (isinstance(v, (list, tuple)) and
                                      len(v) > 0 and all(
                                          isinstance(x, dict) and 'type' in x
                                          for x in v)),
              "None or a non-empty list of loss configs (dict(type="
              "'SegCrossEntropyLoss'), dict(type='LovaszSoftmaxLoss'))")
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
        ('optim_wrapper.optimizer.lr', _LR, _LR_HINT),
        ('optim_wrapper.optimizer.weight_decay', _NON_NEGATIVE_NUMBER, ''),
        ('randomness.seed', _INT,
         'a run without a fixed seed cannot be resumed exactly'),
        ('default_hooks.checkpoint.interval', _CKPT_INTERVAL, ''),
        # DBBD's width of the projected point features
        ('model.backbone.hidden_channels', _POSITIVE_INT, ''),
        ('model.class_weight', _CLASS_WEIGHT,
         "'auto' computes them from the training labels"),
        ('model.losses', _LOSS_LIST, ''),
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
    ``optim_wrapper.optimizer.lr`` (finite number in ``[0, MAX_LR]``),
    ``optim_wrapper.optimizer.weight_decay`` (finite number >= 0),
    ``randomness.seed`` (int), ``default_hooks.checkpoint.interval``
    (positive int, or -1), ``model.backbone.hidden_channels`` (positive
    int), ``model.class_weight`` (None, ``'auto'`` or a list of finite
    numbers >= 0), ``model.losses`` (None or a non-empty list of loss
    configs).
    Booleans are not accepted as numbers, and a number written as a string
    (``lr='1e-3'``) gets a message saying to write it without quotes.

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
        # a config's dicts are mmengine ConfigDicts: named as users write
        kind = 'dict' if isinstance(value, dict) else type(value).__name__
        raise ConfigError(
            f'{key}: got {value!r} ({kind}); expected '
            f'{expected}' + (f'; {advice}' if advice else ''))


# ---------------------------------------------------------------------------
# Constructor arguments
# ---------------------------------------------------------------------------


def _refuse(owner, name, value, expected):
    raise ConfigError(f'{owner}: {name} must be {expected}, got {value!r}')


def check_int(owner, name, value, minimum=1):
    """``value`` is an int >= ``minimum`` (bools refused), else
    :class:`ConfigError` naming ``owner`` and ``name``."""
    if not (_is_int(value) and value >= minimum):
        _refuse(owner, name, value,
                'a positive int' if minimum == 1 else f'an int >= {minimum}')


def check_int_list(owner, name, value, minimum=1, allow_empty=False):
    """``value`` is a list or tuple of ints >= ``minimum``, non-empty
    unless ``allow_empty``."""
    what = (f'a {"" if allow_empty else "non-empty "}list of '
            + ('positive ints' if minimum == 1 else f'ints >= {minimum}'))
    if (not isinstance(value, (list, tuple)) or (not value and not allow_empty)
            or not all(_is_int(v) and v >= minimum for v in value)):
        _refuse(owner, name, value, what)


def check_number(owner, name, value, minimum=0.0, inclusive=False):
    """``value`` is a finite number above ``minimum`` (or equal to it with
    ``inclusive``)."""
    ok = (_is_number(value) and math.isfinite(value)
          and (value >= minimum if inclusive else value > minimum))
    if not ok:
        _refuse(owner, name, value,
                f'a finite number {">=" if inclusive else ">"} {minimum:g}')
