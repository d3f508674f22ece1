"""How far fine-tuning moved a backbone from the weights it started from.

A fine-tune that ends at scratch's mIoU may have kept its pre-trained
weights and found them no better than random ones, or rewritten them.
This module tells the two apart: for every parameter tensor of the
backbone, the size of the change relative to the start,
``|end - start| / |start|``, and the cosine between the two; and the
same over all parameters together.

    from dbbd.apis.drift import fine_tune_drift, format_drift
    print(format_drift(fine_tune_drift(cfg, 'pre/epoch_8.pth',
                                       'ft/epoch_40.pth')))

``tools/weight_drift.py`` is the command line. Buffers (BatchNorm's
running statistics) are left out: they are recomputed, not learned.
"""
import math
from typing import Dict, Optional

import torch

__all__ = ['weight_drift', 'backbone_state', 'fine_tune_drift',
           'format_drift']


def _ratio(num: float, den: float) -> Optional[float]:
    return num / den if den > 0 else None


def weight_drift(start: Dict[str, torch.Tensor],
                 end: Dict[str, torch.Tensor]) -> dict:
    """Compare two sets of named tensors, ``start`` (what training began
    from) and ``end`` (where it stopped).

    Returns:
        dict(rows=[dict(name, numel, dims, start_norm, change, cosine)] in
        the order of ``start``; total=dict(numel, start_norm, change,
        cosine) over every tensor together). ``change`` is ``|end - start| /
        |start|`` and ``cosine`` the cosine between the flattened tensors;
        None where ``start`` (or ``end``, for the cosine) is all zeros.

    Raises:
        ValueError: a tensor of ``start`` missing from ``end`` or of another
            shape (one line naming it), or no tensor to compare.
    """
    if not start:
        raise ValueError('no parameter tensor to compare: the backbone has '
                         'none')
    rows = []
    sums = dict(numel=0, dd=0.0, ss=0.0, ee=0.0, se=0.0)
    for name, s in start.items():
        if name not in end:
            raise ValueError(
                f'the fine-tuned weights have no tensor {name!r}; give the '
                'checkpoint of a run of the same config')
        e, shape = end[name], tuple(s.shape)
        if tuple(e.shape) != shape:
            raise ValueError(
                f'tensor {name!r} is {shape} at the start and '
                f'{tuple(e.shape)} in the fine-tuned weights; give the '
                'checkpoint of a run of the same config')
        s = s.detach().double().flatten().cpu()
        e = e.detach().double().flatten().cpu()
        dd = float(((e - s) ** 2).sum())
        ss = float((s * s).sum())
        ee = float((e * e).sum())
        se = float((s * e).sum())
        rows.append(dict(name=name, numel=s.numel(), dims=len(shape),
                         start_norm=math.sqrt(ss),
                         change=_ratio(math.sqrt(dd), math.sqrt(ss)),
                         cosine=_ratio(se, math.sqrt(ss * ee))))
        for k, v in (('numel', s.numel()), ('dd', dd), ('ss', ss),
                     ('ee', ee), ('se', se)):
            sums[k] += v
    total = dict(numel=sums['numel'], start_norm=math.sqrt(sums['ss']),
                 change=_ratio(math.sqrt(sums['dd']),
                               math.sqrt(sums['ss'])),
                 cosine=_ratio(sums['se'],
                               math.sqrt(sums['ss'] * sums['ee'])))
    return dict(rows=rows, total=total)


def backbone_state(checkpoint: str) -> Dict[str, torch.Tensor]:
    """The ``backbone.*`` tensors of a segmentation checkpoint (a
    ``tools/train.py`` run of a ``seg_*`` config), prefix removed (and a
    DDP wrapper's ``module.``), loaded
    with the project's allow-list (``weights_only=True``).

    Raises:
        ValueError: the checkpoint holds no ``backbone.*`` tensor (one
            line).
        FileNotFoundError, CheckpointLoadError: as
            :func:`dbbd.engine.checkpoint.load_checkpoint_safe`.
    """
    from dbbd.engine.checkpoint import load_checkpoint_safe
    from dbbd.engine.pretrained import BACKBONE_PREFIX
    from dbbd.engine.state_check import revise_state_dict
    obj = load_checkpoint_safe(checkpoint)
    state = obj.get('state_dict', obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict):
        raise ValueError(f'{checkpoint}: not a checkpoint with a '
                         'state_dict; give a checkpoint of a segmentation '
                         'run (work_dirs/<run>/epoch_N.pth)')
    # a DDP-wrapped model's 'module.' dropped, as pretrained= drops it
    got = {k[len(BACKBONE_PREFIX):]: v
           for k, v in revise_state_dict(state).items()
           if k.startswith(BACKBONE_PREFIX) and torch.is_tensor(v)}
    if not got:
        raise ValueError(f'{checkpoint}: no backbone.* tensor; give a '
                         'checkpoint of a segmentation run '
                         '(work_dirs/<run>/epoch_N.pth), not of a '
                         'pre-training')
    return got


def fine_tune_drift(cfg, pretrained: Optional[str], checkpoint: str,
                    seed: int = 0) -> dict:
    """:func:`weight_drift` from the backbone a fine-tune of ``cfg`` (a
    segmentation config) starts from, ``pretrained`` loaded as
    ``pretrained=`` loads it (None: the random initialisation of
    ``seed``, which is a scratch run's start only where the run drew the
    same), to the backbone of ``checkpoint``. Parameters only."""
    from .probe import build_segmentor
    end = backbone_state(checkpoint)
    model = build_segmentor(cfg, pretrained, seed)
    start = {n: p for n, p in model.backbone.named_parameters()}
    return weight_drift(start, end)


def _num(v, fmt):
    return '-' if v is None else format(v, fmt)


def format_drift(result: dict, title: str = 'backbone') -> str:
    """A markdown table: one row per tensor with more than one dimension
    (convolution and linear weights; biases and norms count in the total
    only), then the total over every parameter."""
    lines = ['| tensor | numel | norm at start | change (relative) | '
             'cosine |', '|---|---|---|---|---|']
    for r in result['rows']:
        if r['dims'] < 2:
            continue
        lines.append(f"| {r['name']} | {r['numel']} | "
                     f"{r['start_norm']:.3f} | {_num(r['change'], '.2f')} | "
                     f"{_num(r['cosine'], '.2f')} |")
    t = result['total']
    lines.append(f"| **{title}, every parameter** | {t['numel']} | "
                 f"{t['start_norm']:.3f} | {_num(t['change'], '.2f')} | "
                 f"{_num(t['cosine'], '.2f')} |")
    return '\n'.join(lines)
