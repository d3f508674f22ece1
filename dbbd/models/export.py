"""The pre-trained encoder alone: export from a training checkpoint, load
back into ``DBBD`` or into your own model.

What "the encoder" is for DBBD: every trained part that turns points into
features, i.e. everything except the two projection heads (which only map
features into the contrastive space of the loss) and the loss:

========================  =================================================
key prefix                part
========================  =================================================
``input_proj.``           raw point features -> hidden width (G2L roots,
                          L2G leaves)
``context_proj.``         cat(raw features, propagated context) -> hidden
``propagator.``           G2L: parent region feature + offsets -> context
``encoder.``              the shared point encoder (e.g. PointNet)
``aggregator.``           L2G: children -> parent region feature
========================  =================================================

``mode='tensor'`` (G2L point and region features of one view) uses the
first four; ``aggregator.`` is kept so that the L2G branch can be computed
too. Dropped: ``region_head.``, ``point_head.``, ``criterion.``; no
optimizer state, no message hub.

The exported file is a plain dict that ``torch.load(path,
weights_only=True)`` reads (tensors, str, int, float, list, dict only)::

    dict(format='dbbd-encoder', format_version=1, dbbd_version=str,
         state_dict={key: tensor},      # keys with the prefixes above
         key_prefixes=[...],            # the prefixes above
         model_cfg=dict(type='DBBD', ...),  # rebuilds the model
         in_channels=int,               # width of the raw point features
         out_channels=int,              # width D of the features
         feat_keys=[...] or None,       # which raw features (from --config)
         max_depth=int or None,         # tree depth used in training
         source=dict(checkpoint=str, epoch=int, iter=int))
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, Optional, Union

import torch

__all__ = ['EXPORT_FORMAT', 'EXPORT_FORMAT_VERSION', 'ENCODER_PREFIXES',
           'HEAD_PREFIXES', 'encoder_state_dict', 'export_encoder',
           'load_exported_encoder']

EXPORT_FORMAT = 'dbbd-encoder'
EXPORT_FORMAT_VERSION = 1
ENCODER_PREFIXES = ('input_proj.', 'context_proj.', 'propagator.',
                    'encoder.', 'aggregator.')
HEAD_PREFIXES = ('region_head.', 'point_head.', 'criterion.')


def _strip_module(key: str) -> str:
    # weights saved from a DDP-wrapped model
    return key[len('module.'):] if key.startswith('module.') else key


def encoder_state_dict(model_or_state: Union[torch.nn.Module, Dict[str, Any]]
                       ) -> 'OrderedDict[str, torch.Tensor]':
    """The encoder's entries of a ``DBBD`` model or state dict (CPU copies).

    Raises:
        ValueError: an entry belongs to neither the encoder nor the heads
            (not a DBBD state dict, or a newer DBBD with parts this code
            does not know).
    """
    state = model_or_state.state_dict() if isinstance(
        model_or_state, torch.nn.Module) else model_or_state
    out = OrderedDict()
    unknown = []
    for key, value in state.items():
        key = _strip_module(key)
        if key.startswith(ENCODER_PREFIXES):
            out[key] = value.detach().cpu().clone()
        elif not key.startswith(HEAD_PREFIXES):
            unknown.append(key)
    if unknown:
        raise ValueError(
            'encoder_state_dict: entries that are neither encoder '
            f'{ENCODER_PREFIXES} nor heads {HEAD_PREFIXES}: '
            f'{", ".join(unknown[:10])}')
    if not out:
        raise ValueError('encoder_state_dict: no encoder entry found (is '
                         'this a DBBD model?)')
    return out


def _config_parts(config):
    """(model_cfg, feat_keys, max_depth) of a config path / Config."""
    from mmengine.config import Config
    cfg = Config.fromfile(config) if isinstance(config, str) else config
    feat_keys = max_depth = None
    for loader in ('val_dataloader', 'train_dataloader'):
        ds = (cfg.get(loader) or {}).get('dataset') or {}
        if ds:
            feat_keys = ds.get('feat_keys', ('normal', ))
            max_depth = ds.get('max_depth')
            break
    return cfg.get('model'), feat_keys, max_depth


def export_encoder(checkpoint: Union[str, Dict[str, Any]],
                   out: Optional[str] = None,
                   config: Optional[Any] = None) -> Dict[str, Any]:
    """Write (and return) the encoder of a training checkpoint.

    Args:
        checkpoint: a checkpoint path (loaded with
            :func:`dbbd.engine.load_checkpoint_safe`) or its loaded dict.
        out: where to write (atomically); None: only return the dict.
        config: optional config path or ``Config``: its ``model`` replaces
            the checkpoint's ``meta.model_cfg`` (which ``SafeCheckpointHook``
            writes), and its dataset's ``feat_keys`` / ``max_depth`` are
            recorded.

    Returns:
        the exported dict (see the module docstring).
    """
    from dbbd.engine.checkpoint import atomic_torch_save, load_checkpoint_safe
    from dbbd.engine.hooks.checkpoint_hook import to_plain
    from dbbd.version import __version__

    source = checkpoint if isinstance(checkpoint, str) else None
    ckpt = load_checkpoint_safe(checkpoint) if source else checkpoint
    state = ckpt.get('state_dict', ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f'{source or "checkpoint"}: holds no state_dict')
    meta = ckpt.get('meta') or {}
    model_cfg, feat_keys, max_depth = meta.get('model_cfg'), None, None
    if config is not None:
        model_cfg, feat_keys, max_depth = _config_parts(config)
    if not model_cfg:
        raise ValueError(
            f'{source or "checkpoint"}: no model config in meta.model_cfg '
            '(checkpoints of SafeCheckpointHook have it); pass the training '
            'config (--config)')
    model_cfg = to_plain(model_cfg)
    weights = encoder_state_dict(state)

    # widths from the weights' own config, as DBBD fills them in
    from .algorithms import DBBD  # noqa: F401  registers DBBD
    from dbbd.registry import MODELS
    model = MODELS.build(model_cfg)
    payload = dict(
        format=EXPORT_FORMAT,
        format_version=EXPORT_FORMAT_VERSION,
        dbbd_version=__version__,
        state_dict=dict(weights),
        key_prefixes=list(ENCODER_PREFIXES),
        model_cfg=model_cfg,
        in_channels=int(model.in_channels),
        out_channels=int(model.out_channels),
        feat_keys=None if feat_keys is None else [str(k) for k in feat_keys],
        max_depth=max_depth,
        source=dict(checkpoint=osp.basename(source) if source else None,
                    epoch=meta.get('epoch'), iter=meta.get('iter')))
    _load_into(model, payload, source or 'checkpoint')  # fails early
    if out is not None:
        folder = osp.dirname(osp.abspath(out))
        os.makedirs(folder, exist_ok=True)
        atomic_torch_save(payload, out)
    return payload


def _load_into(model, payload, source):
    result = model.load_state_dict(payload['state_dict'], strict=False)
    missing = [k for k in result.missing_keys
               if not k.startswith(HEAD_PREFIXES)]
    if missing or result.unexpected_keys:
        raise ValueError(
            f'{source}: the encoder weights do not fit the model of its '
            f'model_cfg (missing: {missing[:10]}, unexpected: '
            f'{result.unexpected_keys[:10]})')


def load_exported_encoder(path: str, map_location: Any = 'cpu'):
    """Rebuild ``DBBD`` from an exported encoder, in eval mode.

    The encoder weights are loaded strictly (every encoder entry must be
    there and fit); the projection heads are freshly initialised (they are
    not part of the export), so use the model for ``mode='tensor'`` (or
    continue pre-training, which trains new heads).

    Returns:
        DBBD: ``model(inputs, mode='tensor')`` gives the G2L point features.
    """
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get('format') != \
            EXPORT_FORMAT:
        raise ValueError(f'{path}: not a DBBD encoder export (make one with '
                         'tools/export_encoder.py)')
    version = payload.get('format_version')
    if not isinstance(version, int) or version > EXPORT_FORMAT_VERSION:
        raise ValueError(f'{path}: encoder export format {version!r} is '
                         'newer than this DBBD reads '
                         f'({EXPORT_FORMAT_VERSION}); upgrade dbbd')
    from .algorithms import DBBD  # noqa: F401  registers DBBD
    from dbbd.registry import MODELS
    model = MODELS.build(payload['model_cfg'])
    _load_into(model, payload, path)
    if map_location is not None and not callable(map_location) and \
            not isinstance(map_location, dict):
        model.to(map_location)
    return model.eval()
