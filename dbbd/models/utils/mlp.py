"""The per-row MLP every part is made of, and its concatenating first layer.

Every MLP of the model starts from a concatenation: an encoder reads
``cat(feat, coord)``, the propagator ``cat(parent_feat[parent], coord)``, the
context projection ``cat(feat, context)``. :func:`linear_cat` computes the
first ``Linear`` of such a concatenation without building it: the weight is
split by columns and each part is multiplied on its own. A part given as
``(table, index)`` stands for ``table[index]``; it is multiplied on the
``R`` table rows *before* the gather, so a region feature shared by all the
points of the region is projected once per region instead of once per
point (the propagator's first layer then costs ``R_l`` rows, not ``M``).
"""
from typing import Sequence

import torch.nn.functional as F
from torch import nn

from dbbd.utils.config_check import check_int, check_int_list

from .norm_act import norm_act_linear

__all__ = ['MLP', 'linear_cat']

_ACTS = dict(gelu=nn.GELU, relu=nn.ReLU)


def _width(part):
    return part[0].shape[-1] if isinstance(part, tuple) else part.shape[-1]


def linear_cat(linear, parts):
    """``linear(cat(parts, -1))`` without materialising the concatenation.

    Args:
        linear (nn.Linear): with ``in_features == sum of part widths``.
        parts: tensors ``(M, C_i)``, or pairs ``(table (R, C_i), index (M,))``
            meaning ``table[index]``.

    Returns:
        (M, out_features).
    """
    if len(parts) == 1 and not isinstance(parts[0], tuple):
        return linear(parts[0])
    widths = [_width(p) for p in parts]
    if sum(widths) != linear.in_features:
        raise ValueError(f'inputs of widths {widths} (sum {sum(widths)}) do '
                         f'not match Linear({linear.in_features}, '
                         f'{linear.out_features})')
    w, bias = linear.weight, linear.bias
    cols, start = [], 0
    for c in widths:
        cols.append(w[:, start:start + c])
        start += c
    # Start from a gathered part when there is one (bias added on its R rows,
    # not on M), then accumulate the dense parts in place: one (M, out)
    # buffer in all. In-place is safe: neither index_select nor addmm keeps
    # its output for backward.
    order = sorted(range(len(parts)),
                   key=lambda i: not isinstance(parts[i], tuple))
    out = None
    for i in order:
        p = parts[i]
        if isinstance(p, tuple):
            table, index = p
            proj = F.linear(table, cols[i], bias if out is None else None)
            g = proj.index_select(0, index)
            out = g if out is None else out.add_(g)
        elif out is None:
            out = F.linear(p, cols[i], bias)
        else:
            # in-place ops escape autocast: match the buffer's dtype
            out = out.addmm_(p.to(out.dtype), cols[i].t().to(out.dtype))
    return out


class MLP(nn.Module):
    """Per-row MLP: ``(Linear -> LayerNorm -> act) * len(hidden) -> Linear``.

    LayerNorm, not BatchNorm: statistics are per row, so a region of one
    point, a batch of one scene and a level-batched call give the same
    result as a region-by-region one.

    Args:
        in_channels: width of the (concatenated) input.
        hidden_channels: widths of the hidden layers.
        out_channels: output width.
        act: 'gelu' or 'relu'.
        last_norm_act: also put LayerNorm and the activation after the last
            Linear (for projections whose output feeds another Linear).
        last_bias: the last Linear has a bias (False where a constant shift
            of the output cannot matter, e.g. scores fed to a softmax: such
            a bias would never get a gradient).

    ``forward(*parts)`` takes the input as one tensor ``(M, in_channels)``
    or as several parts that :func:`linear_cat` concatenates.
    """

    def __init__(self, in_channels: int, hidden_channels: Sequence[int],
                 out_channels: int, act: str = 'gelu',
                 last_norm_act: bool = False, last_bias: bool = True):
        super().__init__()
        check_int('MLP', 'in_channels', in_channels)
        check_int_list('MLP', 'hidden_channels', hidden_channels,
                       allow_empty=True)
        check_int('MLP', 'out_channels', out_channels)
        if act not in _ACTS:
            raise ValueError(f'act must be one of {sorted(_ACTS)}, got {act}')
        dims = [in_channels, *hidden_channels, out_channels]
        layers = []
        for i in range(len(dims) - 1):
            last = i == len(dims) - 2
            layers.append(nn.Linear(dims[i], dims[i + 1],
                                    bias=last_bias or not last))
            if i < len(dims) - 2 or last_norm_act:
                layers += [nn.LayerNorm(dims[i + 1]), _ACTS[act]()]
        self.layers = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, *parts):
        layers = self.layers
        h = linear_cat(layers[0], parts)
        # each hidden layer is Linear, LayerNorm, activation: the norm, the
        # activation and the next Linear run as one function that keeps
        # only its input for backward (see norm_act.py)
        i = 1
        while i < len(layers):
            nxt = layers[i + 2] if i + 2 < len(layers) else None
            h = norm_act_linear(h, layers[i], layers[i + 1], nxt)
            i += 3
        return h
