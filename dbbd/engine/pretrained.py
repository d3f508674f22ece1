"""Pre-trained backbone weights for a downstream model: ``pretrained=PATH``.

A downstream model's ``init_weights`` asks for it through the
``WEIGHT_INITIALIZERS`` registry (:class:`PretrainedBackboneInit`), so no
model imports this module.

``PATH`` is either a checkpoint ``tools/train.py`` wrote for a pre-training
config (keys ``backbone.*``, ``region_head.*``, ``point_head.*``; a
segmentation checkpoint's ``backbone.*`` works too) or a file of
``tools/export_encoder.py`` (format 2: keys relative to the backbone). A
downstream model whose backbone is a scene backbone (SpUNet) takes the
scene backbone's part of a DBBD tree backbone's weights
(:meth:`~dbbd.models.backbones.DBBDTreeBackbone.scene_backbone_weights`),
and the whole
backbone of a SceneContrast checkpoint or of a SelfDistill one (the
student's ``backbone.``; the EMA teacher's ``teacher_backbone.`` is not
read). A backbone with an ``adapt_pretrained(weights) -> (weights, note)``
method reads the file's names its own way first (an encoder-only
``PointTransformerV3`` leaves out a full network's decoder). Both are read
with ``torch.load(weights_only=True)`` and the project's
allow-list. Exactly the backbone's tensors are loaded, all of them, or
nothing: unlike a ``strict=False`` load, which only logs, a file whose
backbone tensors do not match the model stops with one line naming the
first offending keys (and the two shapes).
"""
import os.path as osp
from typing import Dict, Sequence, Tuple

import torch
from mmengine.logging import print_log

from dbbd.registry import MODELS, WEIGHT_INITIALIZERS

from .checkpoint import (CheckpointLoadError, CorruptCheckpointError,
                         load_checkpoint_safe)
from .export import check_export
from .hooks.checkpoint_hook import to_plain
from .state_check import (CheckpointMismatchError, check_state_dict_matches,
                          revise_state_dict)

__all__ = ['PretrainedLoadError', 'PretrainedBackboneInit',
           'read_backbone_weights', 'match_backbone_weights',
           'load_pretrained_backbone', 'check_pretrained_config',
           'checkpoint_kind', 'seg_configs_for']

BACKBONE_PREFIX = 'backbone.'


class PretrainedLoadError(CheckpointLoadError):
    """``pretrained`` cannot be loaded into the backbone; one line."""


def _first(keys, n=3):
    keys = list(keys)
    more = f' (+{len(keys) - n} more)' if len(keys) > n else ''
    return ', '.join(keys[:n]) + more


def _shape(t):
    return str(tuple(int(d) for d in t))


@WEIGHT_INITIALIZERS.register_module()
class PretrainedBackboneInit:
    """The weight initializer of ``pretrained=``: called on a backbone, it
    loads the backbone tensors of ``checkpoint`` into it
    (:func:`load_pretrained_backbone`). ``PointSegmentor.init_weights``
    builds it through ``WEIGHT_INITIALIZERS``.

    Args:
        checkpoint: a training checkpoint or an encoder export.
        fresh: names of the model's modules that start fresh (logged).
    """

    def __init__(self, checkpoint: str, fresh: Sequence[str] = ()):
        self.checkpoint = checkpoint
        self.fresh = list(fresh)

    def __call__(self, backbone: torch.nn.Module) -> int:
        return load_pretrained_backbone(backbone, self.checkpoint,
                                        self.fresh)


def read_backbone_weights(path: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """The backbone tensors of a training checkpoint or an encoder export,
    keys relative to the backbone, and a short description of the file.

    Raises:
        PretrainedLoadError: no such file, not a checkpoint or export, an
            export of another format, or no backbone tensor in the file.
    """
    if not isinstance(path, str) or not path.strip():
        raise PretrainedLoadError(
            f'pretrained={path!r}: not a file path; give a pre-training '
            'checkpoint or a file of tools/export_encoder.py, or set '
            'pretrained=None to train from scratch')
    if osp.isdir(path):
        raise PretrainedLoadError(
            f'pretrained={path}: is a folder, not a file; give a checkpoint '
            f'in it (its last_checkpoint names the latest), or set '
            'pretrained=None to train from scratch')
    if not osp.isfile(path):
        raise PretrainedLoadError(
            f'pretrained={path}: no such file; pre-train first (python '
            'tools/train.py configs/dbbd/dbbd_small_demo.py writes '
            'work_dirs/dbbd_small_demo/epoch_10.pth), or set pretrained=None '
            'to train from scratch')
    try:
        payload = load_checkpoint_safe(path, map_location='cpu')
    except CorruptCheckpointError as e:
        raise PretrainedLoadError(
            f'pretrained={path}: not a readable checkpoint ('
            f'{getattr(e, "reason", e)}); give a pre-training checkpoint '
            'or a file of tools/export_encoder.py (pre-train again if this '
            'one was damaged)') from None
    except CheckpointLoadError as e:
        raise PretrainedLoadError(f'pretrained={path}: {e}') from None
    if isinstance(payload, dict) and 'format' in payload:
        try:
            payload = check_export(payload, path)
        except ValueError as e:
            raise PretrainedLoadError(f'pretrained={e}') from None
        src = payload.get('source') or {}
        return dict(payload['state_dict']), (
            f'encoder export of {src.get("checkpoint")}, epoch '
            f'{src.get("epoch")}')
    state = payload.get('state_dict', payload) if isinstance(
        payload, dict) else None
    if not isinstance(state, dict):
        raise PretrainedLoadError(
            f'pretrained={path}: holds no state_dict; give a DBBD training '
            'checkpoint or a file of tools/export_encoder.py')
    state = revise_state_dict(state)
    weights = {k[len(BACKBONE_PREFIX):]: v for k, v in state.items()
               if k.startswith(BACKBONE_PREFIX)}
    if not weights:
        raise PretrainedLoadError(
            f'pretrained={path}: none of its {len(state)} tensors belongs to '
            f'a backbone (no "{BACKBONE_PREFIX}" key; first keys: '
            f'{_first(state)}); give a DBBD training checkpoint or a file of '
            'tools/export_encoder.py')
    meta = payload.get('meta') or {}
    return weights, f'training checkpoint, epoch {meta.get("epoch")}'


def load_pretrained_backbone(backbone: torch.nn.Module, path: str,
                             fresh: Sequence[str] = ()) -> int:
    """Load the backbone tensors of ``path`` into ``backbone``, exactly.

    Logs one line: how many tensors were loaded, from what, and which
    modules of the model start fresh (``fresh``, e.g. ``['head']``).

    Returns:
        the number of tensors loaded.

    Raises:
        PretrainedLoadError: (one line, nothing loaded) no backbone tensor
            of the file matches the model's; a tensor's shape differs (a
            small-mode checkpoint into a full-size backbone, say); or the
            two backbones have different tensors.
    """
    weights, what = read_backbone_weights(path)
    weights, what = match_backbone_weights(backbone, weights, what, path)
    backbone.load_state_dict(weights, strict=True)
    print_log(
        f'pretrained: loaded {len(weights)} backbone tensors from {path} '
        f'({what}); starting fresh: {", ".join(fresh) or "nothing"}',
        logger='current')
    return len(weights)


def match_backbone_weights(backbone: torch.nn.Module,
                           weights: Dict[str, torch.Tensor], what: str,
                           path: str) -> Tuple[Dict[str, torch.Tensor], str]:
    """The tensors of ``weights`` (of :func:`read_backbone_weights`) that
    ``backbone`` takes, checked against its names and shapes (a backbone
    on the ``meta`` device is enough); loads nothing.

    Returns:
        (weights, what): the tensors to load, keys relative to the
        backbone, and the description of the file.

    Raises:
        PretrainedLoadError: as :func:`load_pretrained_backbone`.
    """
    from dbbd.models.backbones.tree_backbone import DBBDTreeBackbone
    model_keys = list(backbone.state_dict())
    inner = DBBDTreeBackbone.scene_backbone_weights(weights)
    if inner and not set(weights) & set(model_keys):
        # DBBD on a scene backbone: the downstream model takes the scene
        # backbone (SpUNet) alone, as Pointcept fine-tunes it
        weights, what = inner, f'{what}, its tree backbone\'s scene backbone'
    adapt = getattr(backbone, 'adapt_pretrained', None)
    if callable(adapt):
        # the backbone's own reading of a file's names (e.g. an encoder-only
        # PTv3 leaving out a full network's decoder)
        weights, note = adapt(weights)
        if note:
            what = f'{what}, {note}'
    if not set(weights) & set(model_keys):
        raise PretrainedLoadError(
            f'pretrained={path}: no backbone tensor matches the model\'s '
            f'{type(backbone).__name__} (file: {_first(weights)}; model: '
            f'{_first(model_keys)}); was it trained with another backbone?')
    try:
        check_state_dict_matches(backbone, weights, path)
    except CheckpointMismatchError as err:
        if err.shape_mismatches:
            shown = '; '.join(f'{k}: file {_shape(a)}, model {_shape(b)}'
                              for k, a, b in err.shape_mismatches[:2])
            more = len(err.shape_mismatches) - 2
            raise PretrainedLoadError(
                f'pretrained={path}: {len(err.shape_mismatches)} backbone '
                f'tensor(s) have another shape than the model\'s ({shown}'
                f'{f"; +{more} more" if more > 0 else ""}): the file was '
                'trained with other widths (a small-mode checkpoint into a '
                'full-size model?); use the segmentation config of the '
                'same size') from None
        raise PretrainedLoadError(
            f'pretrained={path}: the backbones differ: '
            + '; '.join(part for part in (
                f'{len(err.missing)} model tensor(s) missing from the file '
                f'({_first(err.missing)})' if err.missing else '',
                f'{len(err.unexpected)} file tensor(s) unknown to the model '
                f'({_first(err.unexpected)})' if err.unexpected else '')
                        if part) + '; use the backbone config the file was '
            'trained with') from None
    return weights, what


def check_pretrained_config(cfg) -> None:
    """``model.pretrained`` of a training config, before the Runner is
    built: the file is read (safely) and its backbone tensors matched to a
    backbone built on the ``meta`` device (shapes only, no memory, no
    initialisation cost); nothing is loaded. Does nothing without
    ``pretrained``.

    Raises:
        PretrainedLoadError: one line starting with ``pretrained=``, as
            :func:`load_pretrained_backbone` would raise once the Runner is
            built.
    """
    import copy

    model_cfg = cfg.get('model') or {}
    path = model_cfg.get('pretrained') if isinstance(model_cfg, dict) \
        else None
    if path is None:
        return
    weights, what = read_backbone_weights(path)
    shapes_only = copy.deepcopy(dict(model_cfg))
    shapes_only['pretrained'] = None
    with torch.device('meta'):
        model = MODELS.build(shapes_only)
    match_backbone_weights(model.backbone, weights, what, path)


def checkpoint_kind(payload) -> str:
    """What a loaded checkpoint file is: ``'export'`` (an encoder of
    ``tools/export_encoder.py``), ``'pretraining'`` (projection heads, no
    segmentation head), ``'segmentation'`` (a ``head.``) or ``'other'``."""
    if isinstance(payload, dict) and payload.get('format') == 'dbbd-encoder':
        return 'export'
    state = payload.get('state_dict', payload) if isinstance(
        payload, dict) else {}
    keys = list(revise_state_dict(state)) if isinstance(state, dict) else []
    if any(k.startswith('teacher_backbone.') for k in keys):
        return 'pretraining'  # SelfDistill (its student head is no 'head.')
    if any(k.startswith('head.') for k in keys):
        return 'segmentation'
    if any(k.startswith(('region_head.', 'point_head.')) for k in keys):
        return 'pretraining'
    return 'other'


def seg_configs_for(backbone_cfg, config_dir: str,
                    pattern: str = 'seg_*_ft.py'):
    """The fine-tuning configs under ``config_dir`` whose ``model.backbone``
    equals ``backbone_cfg`` (so a checkpoint with that backbone fits
    them), sorted by name. A SpUNet's ``readout`` is not compared: it
    changes what the forward pass reads, not the weights (a SelfDistill
    pre-training reads its SpUNet encoder-only)."""
    import glob

    from mmengine.config import Config

    def weights_of(cfg):
        cfg = to_plain(cfg)
        if isinstance(cfg, dict):
            cfg = {k: v for k, v in cfg.items() if k != 'readout'}
        return cfg

    want = weights_of(backbone_cfg)
    found = []
    for path in sorted(glob.glob(osp.join(config_dir, pattern))):
        try:
            backbone = Config.fromfile(path).model.get('backbone')
        except Exception:  # a config that does not load is no answer
            continue
        if weights_of(backbone) == want:
            found.append(path)
    return found
