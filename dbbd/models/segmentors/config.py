"""Top-level config keys: ``num_classes``, ``class_names`` (downstream
configs, and the linear probe of pre-training configs) and ``pretrained``.

Python configs resolve ``model = dict(num_classes=num_classes)`` when the
file is read, so a child config (or ``--cfg-options``) that sets the
top-level key alone would leave the model, the metric and the datasets at
the old value. :func:`apply_top_level` copies the top-level values to
every place that uses them; ``tools/train.py`` and ``tools/test.py`` call
it on every config.
"""
import inspect
from typing import Any, Optional

__all__ = ['TOP_LEVEL_KEYS', 'pop_top_level', 'apply_top_level',
           'set_num_classes', 'set_pretrained']

#: ``--cfg-options`` keys handled here rather than merged as they are.
TOP_LEVEL_KEYS = ('num_classes', 'class_names', 'pretrained')

_METRICS_WITH_CLASSES = ('SegMetric', 'LinearProbeMetric')


def pop_top_level(opts: dict) -> dict:
    """Take :data:`TOP_LEVEL_KEYS` out of a ``--cfg-options`` dict."""
    return {k: opts.pop(k) for k in TOP_LEVEL_KEYS if k in opts}


def _short(type_name: Any) -> str:
    return str(type_name).split('.')[-1] if type_name is not None else ''


def _metrics(cfg):
    for name in ('val_evaluator', 'test_evaluator'):
        ev = cfg.get(name)
        if isinstance(ev, dict) and 'metrics' in ev:  # an Evaluator config
            ev = ev['metrics']
        for m in (ev if isinstance(ev, (list, tuple)) else [ev]):
            if isinstance(m, dict) and _short(m.get('type')) in \
                    _METRICS_WITH_CLASSES:
                yield m


def set_num_classes(cfg, num_classes: int) -> None:
    """Make ``num_classes`` and the top-level ``class_names`` the classes
    of the whole config: the top level, the model (and its head when the
    head names one), the metrics (``SegMetric``, ``LinearProbeMetric``) and
    the datasets that check labels (and their ``metainfo`` classes).
    ``class_names`` of another length become None: the metrics then number
    the classes (``class0``, ...), never borrow another dataset's names.

    Raises:
        ValueError: not an int >= 2.
    """
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) \
            or num_classes < 2:
        raise ValueError(f'num_classes must be an int >= 2, got '
                         f'{num_classes!r}')
    cfg['num_classes'] = num_classes
    names = cfg.get('class_names')
    if names is not None and len(names) != num_classes:
        names = cfg['class_names'] = None
    if names is not None:
        names = tuple(names)
    model = cfg.get('model') or {}
    if 'num_classes' in model:
        model['num_classes'] = num_classes
        if 'class_names' in model:
            model['class_names'] = names
        if isinstance(model.get('head'), dict) and \
                'num_classes' in model['head']:
            model['head']['num_classes'] = num_classes
    for m in _metrics(cfg):
        m['num_classes'] = num_classes
        if 'class_names' in m or names is not None:
            m['class_names'] = names
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        ds = (cfg.get(loader) or {}).get('dataset') or {}
        if 'num_classes' in ds:
            ds['num_classes'] = num_classes
        meta = ds.get('metainfo')
        if isinstance(meta, dict) and meta.get('classes') is not None:
            meta['classes'] = names


def _takes_pretrained(model_cfg) -> bool:
    if 'pretrained' in model_cfg:
        return True
    from dbbd.registry import MODELS
    cls = MODELS.get(model_cfg.get('type')) if isinstance(
        model_cfg.get('type'), str) else model_cfg.get('type')
    try:
        return cls is not None and 'pretrained' in inspect.signature(
            cls.__init__).parameters
    except (TypeError, ValueError):
        return False


def set_pretrained(cfg, path: Optional[str]) -> None:
    """Make ``path`` the pre-trained backbone of a downstream config (top
    level and ``model.pretrained``); None: train from scratch.

    Raises:
        ValueError: the config's model takes no pre-trained backbone (a
            pre-training config).
    """
    if path is not None and (not isinstance(path, str) or
                             not path.strip()):
        raise ValueError(
            f'pretrained={path!r}: not a file path; give a pre-training '
            'checkpoint or a file of tools/export_encoder.py, or set '
            'pretrained=None to train from scratch')
    model = cfg.get('model') or {}
    if not _takes_pretrained(model):
        if path is None:
            return
        raise ValueError(
            f'pretrained={path}: the model {_short(model.get("type"))} '
            'takes no pre-trained backbone; pretrained= is for downstream '
            'configs (configs/dbbd/seg_pointnet_*_ft.py); to continue '
            'pre-training use --resume or load_from')
    cfg['pretrained'] = path
    model['pretrained'] = path


def apply_top_level(cfg, **explicit) -> None:
    """Set the ``explicit`` values (from ``--cfg-options``) at the top
    level, then copy the top-level ``num_classes``, ``class_names`` and
    ``pretrained`` of the config to every place that uses them. A
    top-level value of None (or absent) leaves the sections as they are,
    unless given explicitly; ``class_names`` alone also sets
    ``num_classes`` when the config has none.

    Raises:
        ValueError: one line, a value that cannot work.
    """
    unknown = set(explicit) - set(TOP_LEVEL_KEYS)
    if unknown:
        raise ValueError(f'unknown top-level keys {sorted(unknown)}')
    if 'class_names' in explicit:
        names = explicit['class_names']
        if names is not None and (
                isinstance(names, str) or not isinstance(names, (list, tuple))
                or not all(isinstance(n, str) for n in names)):
            raise ValueError(f'class_names must be a list of names (e.g. '
                             f'"[\'ground\',\'tree\']"), got {names!r}')
        k = explicit.get('num_classes', cfg.get('num_classes'))
        if names is not None and k is None:
            k = explicit['num_classes'] = len(names)
        if names is not None and len(names) != k:
            raise ValueError(f'class_names has {len(names)} names but '
                             f'num_classes is {k}; give one name per class '
                             f'(and num_classes={len(names)} with them)')
        cfg['class_names'] = None if names is None else tuple(names)
    if explicit.get('num_classes') is not None or \
            cfg.get('num_classes') is not None:
        set_num_classes(cfg, explicit.get('num_classes',
                                          cfg.get('num_classes')))
    if 'pretrained' in explicit:
        set_pretrained(cfg, explicit['pretrained'])
    elif cfg.get('pretrained') is not None:
        set_pretrained(cfg, cfg.get('pretrained'))
