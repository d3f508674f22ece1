"""``LayerNorm -> activation [-> Linear]`` that keeps one tensor for backward.

Every hidden layer of the model's MLPs is ``Linear -> LayerNorm -> GELU``
followed by the next ``Linear``. Autograd keeps three ``(M, H)`` tensors per
such layer for the backward pass: the LayerNorm input, its output (for the
activation's gradient) and the activation's output (for the next Linear's
weight gradient). On a level of a large batch that is most of a DBBD
step's memory (about 36 KB per point at full size). Here the LayerNorm,
the activation and the next Linear are one autograd function that keeps
only the LayerNorm input and recomputes the LayerNorm and the activation
in backward: elementwise work, no matrix product is recomputed.

Values and gradients equal those of the modules called one after the
other (``tests/models/test_parts.py`` checks it, in float64 and under
autocast).
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['norm_act_linear']

_ACT = {
    nn.GELU: (lambda x: F.gelu(x),
              lambda g, x: torch.ops.aten.gelu_backward(g, x)),
    nn.ReLU: (lambda x: F.relu(x),
              lambda g, x: g * (x > 0).to(g.dtype)),
}


class _NormActLinear(torch.autograd.Function):

    @staticmethod
    def forward(ctx, x, ln_weight, ln_bias, weight, bias, eps, act_type):
        shape = (x.shape[-1], )
        # F.layer_norm and F.linear: autocast treats them as the modules'
        y = F.layer_norm(x, shape, ln_weight, ln_bias, eps)
        ctx.ln_dtype = y.dtype
        y = _ACT[act_type][0](y)
        out = y if weight is None else F.linear(y, weight, bias)
        ctx.eps, ctx.act_type = eps, act_type
        ctx.out_dtype = out.dtype
        ctx.save_for_backward(x, ln_weight, ln_bias, weight, bias)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, ln_weight, ln_bias, weight, bias = ctx.saved_tensors
        shape = (x.shape[-1], )
        dt = ctx.ln_dtype
        xn = x.to(dt)
        lw = None if ln_weight is None else ln_weight.to(dt)
        lb = None if ln_bias is None else ln_bias.to(dt)
        # the LayerNorm output (and its row statistics) and the activation,
        # recomputed exactly as the forward pass computed them
        y_ln, mean, rstd = torch.native_layer_norm(xn, shape, lw, lb,
                                                   ctx.eps)
        act, act_backward = _ACT[ctx.act_type]
        grad_w = grad_b = None
        if weight is None:
            grad_y = grad.to(dt)
        else:
            y = act(y_ln).to(ctx.out_dtype)
            g = grad.to(ctx.out_dtype)
            if ctx.needs_input_grad[3]:
                grad_w = (g.t() @ y).to(weight.dtype)
            if bias is not None and ctx.needs_input_grad[4]:
                grad_b = g.sum(0).to(bias.dtype)
            grad_y = (g @ weight.to(ctx.out_dtype)).to(dt)
        grad_ln = act_backward(grad_y, y_ln)
        mask = [ctx.needs_input_grad[0],
                lw is not None and ctx.needs_input_grad[1],
                lb is not None and ctx.needs_input_grad[2]]
        gx, g_lw, g_lb = torch.ops.aten.native_layer_norm_backward(
            grad_ln, xn, shape, mean, rstd, lw, lb, mask)
        if gx is not None:
            gx = gx.to(x.dtype)
        if g_lw is not None:
            g_lw = g_lw.to(ln_weight.dtype)
        if g_lb is not None:
            g_lb = g_lb.to(ln_bias.dtype)
        return gx, g_lw, g_lb, grad_w, grad_b, None, None


def norm_act_linear(x: torch.Tensor, norm: nn.LayerNorm, act: nn.Module,
                    linear: Optional[nn.Linear] = None) -> torch.Tensor:
    """``linear(act(norm(x)))`` (or ``act(norm(x))``) keeping only ``x``
    for backward.

    Args:
        x (M, H): rows (the output of the Linear before).
        norm: a ``LayerNorm`` over the last dimension.
        act: ``nn.GELU()`` (default approximation) or ``nn.ReLU()``.
        linear: the next Linear, or None.
    """
    act_type = type(act)
    if act_type not in _ACT or getattr(act, 'approximate', 'none') != \
            'none' or len(norm.normalized_shape) != 1:
        y = act(norm(x))
        return y if linear is None else linear(y)
    return _NormActLinear.apply(
        x, norm.weight, norm.bias,
        None if linear is None else linear.weight,
        None if linear is None else linear.bias, norm.eps, act_type)
