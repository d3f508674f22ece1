"""The ``spconv`` backend: spconv 2.x running the same parameters.

spconv is optional and imported on first use (it adds about 0.6 s to an
import). Parameters are stored in spconv 2.x's own layout
``(C_out, K, K, K, C_in)``, so they go to spconv unchanged; index pairs
spconv builds are cached on the :class:`~.tensor.VoxelSet` like the torch
backend's kernel maps, so each level's pairs are built once.

spconv's CPU path, measured with spconv 2.3.8 and torch 2.13, and what this
backend does about it (all of it inside :func:`_spconv_cpu`, entered only for
CPU tensors and left as it was found):

- the forward pass runs with ``ConvAlgo.Native`` (the only algorithm a CPU
  tensor can use);
- its backward pass calls ``torch.cuda.current_stream()`` even for CPU
  tensors, which raises where CUDA is absent: while inside, when CUDA is
  unavailable, spconv's lookup answers stream 0 (what spconv passes for
  CPU tensors elsewhere), and the original function is put back on the way
  out;
- its CPU kernels race when torch runs more than one thread: 2 threads gave
  wrong outputs in 9 of 200 float32 and 106 of 200 float64 calls of one
  submanifold convolution, 1 thread none in 200 of each. Inside, torch runs
  one thread;
- a bias cannot go to its CPU kernels (it asserts "cpu don't support act and
  bias", which its modules hit in eval mode): the bias is added here;
- its CPU kernels have no bfloat16 / float16: under CPU autocast they run
  in float32, with autocast off inside.

The backward pass runs inside it too because :class:`_ThroughSpconv` wraps
each call: it records spconv's graph in its forward and differentiates it in
its backward.
"""
import contextlib

import torch

from .tensor import VoxelSet

__all__ = ['spconv_available', 'import_spconv', 'SpconvRunner',
           'INSTALL_HINT']

INSTALL_HINT = ("backend='spconv' needs spconv 2.x, which is not installed: "
                "`pip install spconv` (CPU) or the spconv-cu1xx build "
                "matching your CUDA (e.g. `pip install spconv-cu121`)")

# spatial extents handed to spconv are rounded up to a multiple of this, so
# that 8 stride-2 levels divide them exactly (spconv's hash tables make the
# extent free)
_SHAPE_MULTIPLE = 256
_spconv = None


def import_spconv():
    """``(spconv.pytorch, ConvAlgo, SparseConvolutionBase, ops)``; a one-line
    ``ImportError`` naming the packages when spconv is not installed."""
    global _spconv
    if _spconv is None:
        try:
            import spconv.pytorch as spconv_torch
            from spconv.core import ConvAlgo
            from spconv.pytorch import ops
            from spconv.pytorch.conv import SparseConvolutionBase
        except ImportError:
            raise ImportError(INSTALL_HINT) from None
        _spconv = (spconv_torch, ConvAlgo, SparseConvolutionBase, ops)
    return _spconv


def spconv_available(cuda=False):
    """Whether spconv 2.x imports (``cuda=True``: a CUDA build of it; the
    ``spconv`` package itself is CPU only)."""
    try:
        import_spconv()
    except ImportError:
        return False
    return not (cuda and _cpu_only_build())


def _cpu_only_build():
    from spconv.cppconstants import CPU_ONLY_BUILD
    return bool(CPU_ONLY_BUILD)


def _no_stream():
    return 0


@contextlib.contextmanager
def _spconv_cpu():
    """While inside: torch runs one thread, CPU autocast is off and, when
    CUDA is unavailable, spconv's stream lookup answers 0 (see the module's
    docstring)."""
    ops = import_spconv()[3]
    threads = torch.get_num_threads()
    original = ops.get_current_stream
    patch = not torch.cuda.is_available()
    if patch:
        ops.get_current_stream = _no_stream
    torch.set_num_threads(1)
    try:
        with torch.autocast('cpu', enabled=False):
            yield
    finally:
        torch.set_num_threads(threads)
        if patch:
            ops.get_current_stream = original


class _ThroughSpconv(torch.autograd.Function):
    """One spconv convolution on CPU whose backward pass also runs inside
    :func:`_spconv_cpu`: the forward records spconv's own graph on detached
    leaves, the backward differentiates it."""

    @staticmethod
    def forward(ctx, call, feat, weight):
        with torch.enable_grad():
            leaves = [t.detach().requires_grad_(need) for t, need in zip(
                (feat, weight), ctx.needs_input_grad[1:])]
            with _spconv_cpu():
                out = call(*leaves)
        ctx.leaves = leaves
        ctx.out = out.features
        call.result = out
        return out.features.detach()

    @staticmethod
    def backward(ctx, grad):
        leaves, out = ctx.leaves, ctx.out
        ctx.leaves = ctx.out = None
        wanted = [t for t in leaves if t.requires_grad]
        with _spconv_cpu():
            grads = iter(torch.autograd.grad(out, wanted, grad))
        return (None, *[next(grads) if t.requires_grad else None
                        for t in leaves])


class _Call:
    """``call(feat, weight)`` -> spconv's output tensor (no bias)."""

    def __init__(self, conv, sp_input, training):
        self.conv, self.sp_input, self.training = conv, sp_input, training
        self.result = None

    def __call__(self, feat, weight):
        return self.conv._conv_forward(
            self.training, self.sp_input.replace_feature(feat), weight, None)


def _spatial_shape(voxels):
    shape = voxels.cache.get('spconv_shape')
    if shape is None:
        hi = voxels.coords[:, 1:].max(0).values + 1 if len(voxels) else \
            torch.ones(3, dtype=torch.long)
        m = _SHAPE_MULTIPLE
        shape = [int(-(-h // m) * m) for h in hi.tolist()]
        voxels.cache['spconv_shape'] = shape
    return shape


class SpconvRunner:
    """Runs one convolution module's parameters through spconv.

    Args:
        kind: 'subm', 'down' or 'inverse'.
        in_channels, out_channels, kernel_size, stride: the module's.
    """

    def __init__(self, kind, in_channels, out_channels, kernel_size, stride):
        self.kind = kind
        self.args = (in_channels, out_channels, kernel_size, stride)
        self._convs = {}

    def _conv(self, algo):
        conv = self._convs.get(algo)
        if conv is None:
            base = import_spconv()[2]
            cin, cout, k, s = self.args
            conv = base(3, cin, cout, kernel_size=k, stride=s,
                        padding=k // 2 if self.kind == 'subm' else 0,
                        bias=False, subm=self.kind == 'subm',
                        inverse=self.kind == 'inverse', indice_key=self.kind,
                        algo=algo)
            self._convs[algo] = conv
        return conv

    def __call__(self, x, weight, bias, training):
        """``x`` :class:`~.tensor.SparseTensor` -> (out feat, out
        VoxelSet)."""
        spconv_torch, conv_algo = import_spconv()[:2]
        feat = x.feat
        if feat.is_cuda and _cpu_only_build():
            raise RuntimeError(
                "the installed spconv is its CPU build, and the features are "
                "on CUDA: install the spconv-cu1xx build matching your CUDA "
                "instead (e.g. spconv-cu121), or use backend='torch'")
        if not feat.is_cuda and feat.dtype in (torch.bfloat16, torch.float16):
            # spconv's CPU kernels have no half types: float32 under autocast
            feat, weight = feat.float(), weight.float()
        algo = None if feat.is_cuda else conv_algo.Native
        conv = self._conv(algo)
        algo = conv.algo
        kernel_size, stride = self.args[2:]
        voxels = x.voxels
        if self.kind == 'inverse':
            coarse = voxels
            fine = coarse.parent[0] if coarse.parent else None
            pairs = coarse.cache.get(('spconv', 'down', algo))
            if fine is None or pairs is None or \
                    coarse.parent[1:] != (kernel_size, kernel_size):
                raise ValueError(
                    f'an inverse convolution (kernel {kernel_size}) needs a '
                    f'tensor made by a spconv-backend strided convolution '
                    f'with the same kernel size')
            sp_voxels, indice_dict = coarse, {'inverse': pairs}
        else:
            sp_voxels = voxels
            pairs = voxels.cache.get(('spconv', self.kind, kernel_size, algo))
            indice_dict = {self.kind: pairs} if pairs is not None else {}
        indices = sp_voxels.cache.get('spconv_indices')
        if indices is None:
            indices = sp_voxels.coords.int()
            sp_voxels.cache['spconv_indices'] = indices
        sp_input = spconv_torch.SparseConvTensor(
            feat, indices, _spatial_shape(sp_voxels),
            sp_voxels.batch_size)
        sp_input.indice_dict = indice_dict
        call = _Call(conv, sp_input, training)
        if feat.is_cuda:
            out = call(feat, weight)
            out_feat = out.features
        elif torch.is_grad_enabled() and (feat.requires_grad
                                          or weight.requires_grad):
            out_feat = _ThroughSpconv.apply(call, feat, weight)
            out = call.result
        else:
            with _spconv_cpu():
                out = call(feat, weight)
            out_feat = out.features
        if bias is not None:
            out_feat = out_feat + bias
        if self.kind == 'subm':
            if self.kind in out.indice_dict:
                voxels.cache[('spconv', 'subm', kernel_size, algo)] = \
                    out.indice_dict[self.kind]
            return out_feat, voxels
        if self.kind == 'inverse':
            return out_feat, fine
        coarse = VoxelSet(out.indices.long(), voxels.batch_size, check=False)
        coarse.cache['spconv_indices'] = out.indices
        coarse.parent = (voxels, kernel_size, stride)
        coarse.cache['spconv_shape'] = list(out.spatial_shape)
        coarse.cache[('spconv', 'down', algo)] = out.indice_dict[self.kind]
        return out_feat, coarse
