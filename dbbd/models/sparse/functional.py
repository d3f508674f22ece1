"""The ``torch`` backend's convolution: gather, matrix product, scatter.

:func:`sparse_conv` runs a :class:`~.kernel_map.KernelMap` as, per offset
``k`` with pairs, ``out.index_add_(0, out_idx_k, feat[in_idx_k] @ W[k])``.
Its backward is written out (an ``autograd.Function``) rather than left to
autograd, which would keep every gathered ``feat[in_idx_k]`` alive until the
backward pass and allocate a zero ``(N, C)`` gradient per offset for each
gather: here nothing but ``feat`` and the weight is saved, the gathers are
redone in the backward pass, and each gradient is accumulated in place in
one buffer.
"""
import torch

__all__ = ['sparse_conv', 'weight_matrices']


def weight_matrices(weight):
    """A weight stored as ``(C_out, K, K, K, C_in)`` (spconv 2.x's layout,
    also Pointcept's checkpoints) as per-offset matrices
    ``(K^3, C_in, C_out)`` (``out = in @ W[k]``).

    A ``1 x 1 x 1`` kernel is read as spconv reads it: its storage viewed as
    one ``(C_in, C_out)`` matrix (spconv computes ``feat @
    weight.view(C_in, C_out)`` there), so the same parameters give the same
    results in both backends and in checkpoints trained with spconv.
    """
    c_out, c_in = weight.shape[0], weight.shape[-1]
    if weight.shape[1:4].numel() == 1:
        return weight.reshape(1, c_in, c_out)
    return weight.permute(1, 2, 3, 4, 0).reshape(-1, c_in, c_out)


class _SparseConv(torch.autograd.Function):

    @staticmethod
    def forward(ctx, feat, weight, kmap):
        feat = feat.contiguous()
        if kmap.identity >= 0:
            out = feat @ weight[kmap.identity]
        else:
            out = feat.new_zeros(kmap.num_out, weight.shape[2])
        in_idx, out_idx = kmap.in_idx, kmap.out_idx
        for k, s, e in kmap.bounds:
            out.index_add_(0, out_idx[s:e],
                           feat.index_select(0, in_idx[s:e]) @ weight[k])
        ctx.save_for_backward(feat, weight)
        ctx.kmap = kmap
        return out

    @staticmethod
    def backward(ctx, grad_out):
        feat, weight = ctx.saved_tensors
        kmap = ctx.kmap
        need_feat, need_weight = ctx.needs_input_grad[:2]
        grad_out = grad_out.contiguous()
        grad_feat = grad_weight = None
        if need_weight:
            grad_weight = torch.zeros_like(weight)
        ident = kmap.identity
        if need_feat:
            if ident >= 0:
                grad_feat = grad_out @ weight[ident].t()
            else:
                grad_feat = feat.new_zeros(feat.shape)
        if need_weight and ident >= 0:
            torch.mm(feat.t(), grad_out, out=grad_weight[ident])
        in_idx, out_idx = kmap.in_idx, kmap.out_idx
        for k, s, e in kmap.bounds:
            g = grad_out.index_select(0, out_idx[s:e])
            if need_feat:
                grad_feat.index_add_(0, in_idx[s:e], g @ weight[k].t())
            if need_weight:
                torch.mm(feat.index_select(0, in_idx[s:e]).t(), g,
                         out=grad_weight[k])
        return grad_feat, grad_weight, None


def sparse_conv(feat, weight, kmap):
    """Sparse convolution of ``feat (N_in, C_in)`` along ``kmap``.

    Args:
        feat (N_in, C_in): input voxel features.
        weight (K^3, C_in, C_out): per-offset matrices (see
            :func:`weight_matrices`).
        kmap: :class:`~.kernel_map.KernelMap` with ``num_in == N_in``.

    Returns:
        (N_out, C_out): output voxel features (no bias). Under autocast,
        computed in the autocast dtype (as ``mm`` would be), which keeps
        the products and the scatters in one dtype.
    """
    if feat.shape[0] != kmap.num_in:
        raise ValueError(f'feat has {feat.shape[0]} rows, the kernel map '
                         f'{kmap.num_in} input voxels')
    device_type = feat.device.type
    if torch.is_autocast_enabled(device_type):
        dtype = torch.get_autocast_dtype(device_type)
        with torch.autocast(device_type, enabled=False):
            return _SparseConv.apply(feat.to(dtype), weight.to(dtype), kmap)
    return _SparseConv.apply(feat, weight, kmap)
