"""Sparse 3D convolution modules with interchangeable backends.

Three convolutions, named as in spconv 2.x (and Pointcept's SpUNet), each
holding ``weight (C_out, K, K, K, C_in)`` (spconv 2.x's layout) and an
optional ``bias (C_out,)``:

- :class:`SubMConv3d`: submanifold, stride 1, odd kernel centred on each
  voxel; the output voxels are the input voxels.
- :class:`SparseConv3d`: strided (downsampling), ``kernel_size == stride``
  (2 in SpUNet); voxel ``c`` feeds the coarse voxel ``c // stride``.
- :class:`SparseInverseConv3d`: the transpose of the strided convolution
  that made its input, back onto that convolution's (finer) voxel set.

``backend`` selects who computes (the same parameters, the same results to
float tolerance):

- ``'torch'`` (default): pure PyTorch (:mod:`.kernel_map`,
  :mod:`.functional`), on any device.
- ``'spconv'``: spconv 2.x (:mod:`.spconv_backend`); a one-line
  ``ImportError`` when it is not installed.
- ``'auto'``: ``'spconv'`` when a CUDA build of spconv imports *and* the
  features are on a CUDA device, else ``'torch'`` (decided per call, from
  the input's device).
"""
import math

import torch
from torch import nn

from .functional import sparse_conv, weight_matrices
from .kernel_map import downsample_map, submanifold_map
from .spconv_backend import SpconvRunner, import_spconv, spconv_available
from .tensor import SparseTensor

__all__ = [
    'BACKENDS', 'resolve_backend', 'set_backend', 'SparseModule',
    'SparseSequential', 'SubMConv3d', 'SparseConv3d', 'SparseInverseConv3d'
]

BACKENDS = ('auto', 'torch', 'spconv')


def _check_backend(backend):
    if backend not in BACKENDS:
        raise ValueError(f'backend must be one of {BACKENDS}, got '
                         f'{backend!r}')
    if backend == 'spconv':
        import_spconv()   # the one-line install hint, at build time
    return backend


def resolve_backend(backend, device):
    """The backend that computes: ``'torch'`` or ``'spconv'``.

    ``'auto'`` is ``'spconv'`` when a CUDA build of spconv imports and
    ``device`` is CUDA, else ``'torch'``.
    """
    _check_backend(backend)
    if backend == 'auto':
        device = torch.device(device)
        return 'spconv' if device.type == 'cuda' and \
            spconv_available(cuda=True) else 'torch'
    return backend


def set_backend(module, backend):
    """Set ``backend`` on every sparse convolution inside ``module`` (the
    parameters stay: the same weights run on the other backend)."""
    _check_backend(backend)
    for m in module.modules():
        if getattr(m, 'backend', None) in BACKENDS:
            m.backend = backend
    return module


class SparseModule(nn.Module):
    """A module whose ``forward`` takes and returns a
    :class:`~.tensor.SparseTensor` (:class:`SparseSequential` passes it the
    whole tensor; other modules get ``feat`` only)."""


class SparseSequential(nn.Sequential, SparseModule):
    """``nn.Sequential`` over a :class:`~.tensor.SparseTensor`: sparse
    modules get the tensor, any other module (``BatchNorm1d``, ``ReLU``,
    ``Identity``) is applied to its ``feat (N, C)``."""

    def forward(self, x):
        for module in self:
            if isinstance(module, SparseModule):
                x = module(x)
            else:
                x = x.replace_feat(module(x.feat))
        return x


class _SparseConv(SparseModule):
    """Shared parameters, initialisation and backend dispatch."""

    kind = None

    def __init__(self, in_channels, out_channels, kernel_size, stride,
                 bias, backend):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.backend = _check_backend(backend)
        self.weight = nn.Parameter(torch.empty(
            out_channels, kernel_size, kernel_size, kernel_size,
            in_channels))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_channels))
        else:
            self.register_parameter('bias', None)
        self._spconv = SpconvRunner(self.kind, in_channels, out_channels,
                                    kernel_size, stride)
        self.reset_parameters()

    def reset_parameters(self):
        """``nn.Conv3d``'s default: uniform in ``+-1 / sqrt(fan_in)``,
        ``fan_in = C_in * K^3``."""
        bound = 1 / math.sqrt(self.in_channels * self.kernel_size ** 3)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self):
        s = (f'{self.in_channels}, {self.out_channels}, '
             f'kernel_size={self.kernel_size}')
        if self.stride != 1:
            s += f', stride={self.stride}'
        return s + f', bias={self.bias is not None}, backend={self.backend!r}'

    def forward(self, x: SparseTensor) -> SparseTensor:
        if x.feat.shape[1] != self.in_channels:
            raise ValueError(f'{type(self).__name__} expects '
                             f'{self.in_channels} input channels, got '
                             f'{x.feat.shape[1]}')
        if resolve_backend(self.backend, x.feat.device) == 'spconv':
            feat, voxels = self._spconv(x, self.weight, self.bias,
                                        self.training)
        else:
            kmap, voxels = self._kernel_map(x.voxels)
            feat = sparse_conv(x.feat, weight_matrices(self.weight), kmap)
            if self.bias is not None:
                feat = feat + self.bias.to(feat.dtype)
        return SparseTensor(feat, voxels=voxels)


class SubMConv3d(_SparseConv):
    """Submanifold convolution: ``out[i] = sum_k feat[i + d_k] @ W[k]`` over
    the occupied neighbours ``i + d_k`` of voxel ``i`` (``d_k`` in
    ``[-K//2, K//2]^3``); output voxels = input voxels.

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size: odd K (3; 1 is a per-voxel linear map; the SpUNet stem
            uses 5).
        bias: add a learned ``(C_out,)`` bias.
        backend: 'torch' (default), 'spconv' or 'auto'.

    ``forward(x: SparseTensor (N, C_in)) -> SparseTensor (N, C_out)`` on the
    same voxels.
    """

    kind = 'subm'

    def __init__(self, in_channels, out_channels, kernel_size=3, bias=True,
                 backend='torch'):
        if kernel_size % 2 != 1:
            raise ValueError(f'SubMConv3d needs an odd kernel_size, got '
                             f'{kernel_size}')
        super().__init__(in_channels, out_channels, kernel_size, 1, bias,
                         backend)

    def _kernel_map(self, voxels):
        return submanifold_map(voxels, self.kernel_size), voxels


class SparseConv3d(_SparseConv):
    """Strided (downsampling) convolution, ``kernel_size == stride``:
    ``out[o] = sum_k feat[stride * o + d_k] @ W[k]`` over the occupied fine
    voxels of coarse voxel ``o`` (``d_k`` in ``[0, stride)^3``).

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size: K = stride (2 in SpUNet).
        stride: must equal ``kernel_size``.
        bias: add a learned ``(C_out,)`` bias.
        backend: 'torch' (default), 'spconv' or 'auto'.

    ``forward(x: SparseTensor (N, C_in)) -> SparseTensor (N', C_out)`` on
    the coarse voxels (a new voxel set whose ``parent`` is ``x``'s, for
    :class:`SparseInverseConv3d`).
    """

    kind = 'down'

    def __init__(self, in_channels, out_channels, kernel_size=2, stride=None,
                 bias=True, backend='torch'):
        stride = kernel_size if stride is None else stride
        if stride != kernel_size:
            raise ValueError(f'SparseConv3d supports kernel_size == stride '
                             f'(as SpUNet uses), got kernel_size='
                             f'{kernel_size}, stride={stride}')
        super().__init__(in_channels, out_channels, kernel_size, stride,
                         bias, backend)

    def _kernel_map(self, voxels):
        coarse, kmap = downsample_map(voxels, self.kernel_size, self.stride)
        return kmap, coarse


class SparseInverseConv3d(_SparseConv):
    """Inverse of a :class:`SparseConv3d` with the same kernel size: from
    the coarse voxels it made back onto its input's voxels,
    ``out[i] = feat[i // K] @ W[k(i)]`` with ``k(i)`` the offset of fine
    voxel ``i`` in its coarse voxel (the transposed convolution restricted
    to the fine set).

    Args:
        in_channels, out_channels: C_in, C_out.
        kernel_size: K of the strided convolution being inverted.
        bias: add a learned ``(C_out,)`` bias.
        backend: 'torch' (default), 'spconv' or 'auto'.

    ``forward(x: SparseTensor (N', C_in)) -> SparseTensor (N, C_out)``; ``x``
    must come from a strided convolution (its voxel set has a ``parent``).
    """

    kind = 'inverse'

    def __init__(self, in_channels, out_channels, kernel_size=2, bias=True,
                 backend='torch'):
        super().__init__(in_channels, out_channels, kernel_size, 1, bias,
                         backend)

    def _kernel_map(self, voxels):
        key = ('up', self.kernel_size, self.kernel_size)
        kmap = voxels.cache.get(key)
        if kmap is None or voxels.parent is None:
            raise ValueError(
                f'SparseInverseConv3d(kernel_size={self.kernel_size}) needs '
                f'a tensor made by a SparseConv3d with the same kernel size '
                f'on the torch backend')
        return kmap, voxels.parent[0]
