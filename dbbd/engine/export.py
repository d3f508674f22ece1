"""The pre-trained backbone alone: export from a training checkpoint, load
back into ``DBBD``, into a downstream model, or into your own.

What "the encoder" is for DBBD: its backbone (``model.backbone``, a
:class:`~dbbd.models.backbones.DBBDTreeBackbone`), every trained part that
turns points into features. Dropped: the two projection heads (they only
map features into the contrastive space of the loss) and the loss; no
optimizer state, no message hub. The backbone's keys:

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
too.

The exported file is a plain dict that ``torch.load(path,
weights_only=True)`` reads (tensors, str, int, float, list, dict only)::

    dict(format='dbbd-encoder', format_version=2, dbbd_version=str,
         state_dict={key: tensor},      # the backbone's, keys as above
         key_prefixes=[...],            # the prefixes above
         backbone_cfg=dict(type=...),   # rebuilds the backbone
         model_cfg=dict(type='DBBD', ...),  # rebuilds the whole model
         in_channels=int,               # width of the raw point features
         out_channels=int,              # width D of the features
         feat_keys=[...] or None,       # which raw features (from --config)
         max_depth=int or None,         # tree depth used in training
         source=dict(checkpoint=str, epoch=int, iter=int))

Format 1 (before the backbone split) is refused: re-export from the
training checkpoint with this version.
"""
import os
import os.path as osp
from collections import OrderedDict
from typing import Any, Dict, Optional, Union

import torch

from dbbd.registry import MODELS
from dbbd.version import __version__

from .checkpoint import atomic_torch_save, load_checkpoint_safe
from .hooks.checkpoint_hook import to_plain
from .state_check import load_state_dict_checked, revise_state_dict

__all__ = ['EXPORT_FORMAT', 'EXPORT_FORMAT_VERSION', 'BACKBONE_PREFIX',
           'HEAD_PREFIXES', 'encoder_state_dict', 'export_encoder',
           'load_exported_encoder', 'read_export', 'check_export']

EXPORT_FORMAT = 'dbbd-encoder'
EXPORT_FORMAT_VERSION = 2
BACKBONE_PREFIX = 'backbone.'
HEAD_PREFIXES = ('region_head.', 'point_head.', 'criterion.',
                 # SelfDistill: its prototype heads, EMA teacher and mask
                 # token (the student's backbone is the encoder)
                 'student_head.', 'teacher_backbone.', 'teacher_head.',
                 'teacher_step', 'mask_token.',
                 # DBBD with an EMA teacher (ema_momentum)
                 'teacher_region_head.', 'teacher_point_head.')


def encoder_state_dict(model_or_state: Union[torch.nn.Module, Dict[str, Any]]
                       ) -> 'OrderedDict[str, torch.Tensor]':
    """The backbone's entries of a ``DBBD`` model or state dict (CPU
    copies), keys relative to the backbone.

    Raises:
        ValueError: an entry belongs to neither the backbone nor the heads
            (not a DBBD state dict, or one of the layout before the
            backbone split).
    """
    state = model_or_state.state_dict() if isinstance(
        model_or_state, torch.nn.Module) else model_or_state
    out = OrderedDict()
    unknown = []
    for key, value in revise_state_dict(state).items():
        if key.startswith(BACKBONE_PREFIX):
            out[key[len(BACKBONE_PREFIX):]] = value.detach().cpu().clone()
        elif not key.startswith(HEAD_PREFIXES):
            unknown.append(key)
    if unknown:
        raise ValueError(
            'encoder_state_dict: entries that are neither backbone '
            f'({BACKBONE_PREFIX}) nor heads {HEAD_PREFIXES}: '
            f'{", ".join(unknown[:10])} (a checkpoint of the layout before '
            'the backbone split? it cannot be exported by this version)')
    if not out:
        raise ValueError('encoder_state_dict: no backbone entry found (is '
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
            from dbbd.datasets.formatting import pipeline_feat_keys
            feat_keys = pipeline_feat_keys(ds)
            max_depth = ds.get('max_depth')
            break
    return cfg.get('model'), feat_keys, max_depth


def export_encoder(checkpoint: Union[str, Dict[str, Any]],
                   out: Optional[str] = None,
                   config: Optional[Any] = None) -> Dict[str, Any]:
    """Write (and return) the encoder of a training checkpoint.

    Args:
        checkpoint: a checkpoint path (loaded with
            :func:`~dbbd.engine.checkpoint.load_checkpoint_safe`) or its
            loaded dict.
        out: where to write (atomically); None: only return the dict.
        config: optional config path or ``Config``: its ``model`` replaces
            the checkpoint's ``meta.model_cfg`` (which ``SafeCheckpointHook``
            writes), and its dataset's ``feat_keys`` / ``max_depth`` are
            recorded.

    Returns:
        the exported dict (see the module docstring).
    """
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

    model = MODELS.build(model_cfg)  # fills in the widths it leaves out
    backbone = model.backbone
    payload = dict(
        format=EXPORT_FORMAT,
        format_version=EXPORT_FORMAT_VERSION,
        dbbd_version=__version__,
        state_dict=dict(weights),
        key_prefixes=sorted({k.split('.')[0] + '.' for k in weights}),
        backbone_cfg=to_plain(model_cfg['backbone']),
        model_cfg=model_cfg,
        in_channels=int(backbone.in_channels),
        out_channels=int(backbone.out_channels),
        feat_keys=None if feat_keys is None else [str(k) for k in feat_keys],
        max_depth=max_depth,
        source=dict(checkpoint=osp.basename(source) if source else None,
                    epoch=meta.get('epoch'), iter=meta.get('iter')))
    _load_into(backbone, payload, source or 'checkpoint')  # fails early
    if out is not None:
        folder = osp.dirname(osp.abspath(out))
        os.makedirs(folder, exist_ok=True)
        atomic_torch_save(payload, out)
    return payload


def _load_into(backbone, payload, source):
    load_state_dict_checked(backbone, payload['state_dict'], source)


def read_export(path: str, map_location: Any = 'cpu') -> Dict[str, Any]:
    """The dict of an exported encoder, its format checked; read like every
    checkpoint (``weights_only=True``, the allow-list, the archive's CRCs).

    Raises:
        ValueError: not an export, or of another format version.
        CheckpointLoadError: damaged or unsafe file (one-line message).
    """
    return check_export(load_checkpoint_safe(path, map_location), path)


def check_export(payload: Any, path: str) -> Dict[str, Any]:
    """``payload`` if it is an encoder export of the format this DBBD
    reads; ValueError naming ``path`` otherwise."""
    if not isinstance(payload, dict) or payload.get('format') != \
            EXPORT_FORMAT:
        raise ValueError(f'{path}: not a DBBD encoder export (make one with '
                         'tools/export_encoder.py)')
    version = payload.get('format_version')
    if version != EXPORT_FORMAT_VERSION:
        hint = ('newer than this DBBD reads; upgrade dbbd' if isinstance(
            version, int) and version > EXPORT_FORMAT_VERSION else
                'of the layout before the backbone split; export the '
                'training checkpoint again with tools/export_encoder.py')
        raise ValueError(f'{path}: encoder export format {version!r} is '
                         f'{hint} (this DBBD reads format '
                         f'{EXPORT_FORMAT_VERSION})')
    return payload


def load_exported_encoder(path: str, map_location: Any = 'cpu'):
    """Rebuild ``DBBD`` from an exported encoder, in eval mode.

    The backbone weights are loaded strictly (every entry must be there
    and fit); the projection heads are freshly initialised (they are not
    part of the export), so use the model for ``mode='tensor'`` (or
    continue pre-training, which trains new heads).

    Returns:
        DBBD: ``model(inputs, mode='tensor')`` gives the G2L point features.
    """
    payload = read_export(path, map_location)
    model = MODELS.build(payload['model_cfg'])
    _load_into(model.backbone, payload, path)
    if map_location is not None and not callable(map_location) and \
            not isinstance(map_location, dict):
        model.to(map_location)
    return model.eval()
