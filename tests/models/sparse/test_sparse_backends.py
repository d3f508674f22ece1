"""The spconv backend against the torch backend on CPU: the same modules
(the same parameters), forward and gradients, float32."""
import sys

import pytest
import torch

from dbbd.models.sparse import (SparseConv3d, SparseInverseConv3d,
                                SparseTensor, SubMConv3d, resolve_backend,
                                set_backend, spconv_available)
from dbbd.models.sparse import spconv_backend
from dbbd.models.sparse.tensor import pack_keys

needs_spconv = pytest.mark.skipif(
    not spconv_available(),
    reason='spconv is not installed (pip install spconv): the spconv backend '
           'cannot be compared')

G, B = 8, 2
TOL = dict(rtol=1e-4, atol=1e-5)


@pytest.fixture
def data():
    gen = torch.Generator().manual_seed(0)
    c = torch.cat([torch.randint(0, B, (300, 1), generator=gen),
                   torch.randint(0, G, (300, 3), generator=gen)], 1)
    coords = torch.unique(c, dim=0)
    coords = coords[torch.randperm(len(coords), generator=gen)]
    feat = torch.randn(len(coords), 4, generator=gen)
    return coords, feat


def _run(module, backend, x_feat, coords, seed, make_input=None):
    """Forward on ``backend``, backward of ``sum(out * R(coords))``;
    returns (output rows sorted by voxel key, their coords, input grad,
    param grads)."""
    set_backend(module, backend)
    module.zero_grad()
    x = x_feat.clone().requires_grad_()
    inp = SparseTensor(x, coords) if make_input is None else make_input(x)
    out = module(inp)
    order = torch.argsort(pack_keys(out.coords))
    out_feat, out_coords = out.feat[order], out.coords[order]
    r = torch.randn(out_feat.shape,
                    generator=torch.Generator().manual_seed(seed))
    (out_feat * r).sum().backward()
    grads = {n: p.grad.clone() for n, p in module.named_parameters()}
    return out_feat.detach(), out_coords, x.grad, grads


def _compare(a, b):
    torch.testing.assert_close(a[0], b[0], **TOL)
    assert torch.equal(a[1], b[1])
    torch.testing.assert_close(a[2], b[2], **TOL)
    assert a[3].keys() == b[3].keys()
    for name in a[3]:
        torch.testing.assert_close(a[3][name], b[3][name], **TOL)


@needs_spconv
@pytest.mark.parametrize('kernel_size,training',
                         [(3, True), (1, True), (5, True), (3, False)])
def test_submanifold_backends_agree(data, kernel_size, training):
    coords, feat = data
    conv = SubMConv3d(4, 6, kernel_size, bias=True).train(training)
    a = _run(conv, 'torch', feat, coords, 1)
    _compare(a, _run(conv, 'spconv', feat, coords, 1))
    # submanifold: the output sits on exactly the input's voxels, and the
    # agreement is not that of two empty or all-zero results
    assert torch.equal(a[1], coords[torch.argsort(pack_keys(coords))])
    assert a[0].abs().sum() > 0 and a[2].abs().sum() > 0


@needs_spconv
def test_strided_and_inverse_backends_agree(data):
    coords, feat = data
    down = SparseConv3d(4, 6, 2, bias=True)
    _compare(_run(down, 'torch', feat, coords, 2),
             _run(down, 'spconv', feat, coords, 2))

    # inverse: coarse features given per coarse cell, so both backends'
    # coarse voxels (in their own row orders) carry the same values
    table = torch.randn(B, G // 2, G // 2, G // 2, 6,
                        generator=torch.Generator().manual_seed(3))
    up = SparseInverseConv3d(6, 5, 2, bias=True)

    for backend in ('torch', 'spconv'):
        set_backend(down, backend)
        with torch.no_grad():
            coarse = down(SparseTensor(feat, coords))
        c = coarse.coords
        cells = table[c[:, 0], c[:, 1], c[:, 2], c[:, 3]]
        res = _run(up, backend, cells, None, 4,
                   make_input=lambda y, coarse=coarse: coarse.replace_feat(y))
        # the output is on the fine voxels: same rows in both
        assert torch.equal(res[1], coords[torch.argsort(pack_keys(coords))])
        # input gradients back on the table, to compare across row orders
        grad_table = torch.zeros_like(table)
        grad_table[c[:, 0], c[:, 1], c[:, 2], c[:, 3]] = res[2]
        if backend == 'torch':
            ref = (res[0], res[1], grad_table, res[3])
        else:
            _compare(ref, (res[0], res[1], grad_table, res[3]))


@needs_spconv
def test_cpu_workarounds_are_contained(data):
    from spconv.pytorch import cppcore
    coords, feat = data
    ops = spconv_backend.import_spconv()[3]
    # spconv's own function, where ops imported it from
    original = cppcore.get_current_stream
    assert ops.get_current_stream is original
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        conv = SubMConv3d(4, 4, backend='spconv')
        x = feat.clone().requires_grad_()
        conv(SparseTensor(x, coords)).feat.sum().backward()
        assert x.grad is not None and conv.weight.grad is not None
        assert ops.get_current_stream is original
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(threads)


@needs_spconv
def test_spconv_cpu_right_with_two_threads(data):
    # spconv's CPU kernels race with 2 threads (about half of float64 calls
    # wrong); the backend runs them on one
    coords, feat = data
    conv = SubMConv3d(4, 4, bias=False).double()
    x = SparseTensor(feat.double(), coords)
    with torch.no_grad():
        ref = conv(x).feat
        set_backend(conv, 'spconv')
        threads = torch.get_num_threads()
        torch.set_num_threads(2)
        try:
            worst = max(float((conv(x).feat - ref).abs().max())
                        for _ in range(30))
        finally:
            torch.set_num_threads(threads)
    assert worst < 1e-12


def test_auto_rule_and_missing_spconv(monkeypatch):
    assert resolve_backend('auto', 'cpu') == 'torch'
    assert resolve_backend('torch', 'cuda') == 'torch'
    if spconv_available():
        # the spconv package is the CPU build: 'auto' needs spconv-cu1xx
        from spconv.cppconstants import CPU_ONLY_BUILD
        assert resolve_backend('auto', 'cuda') == \
            ('torch' if CPU_ONLY_BUILD else 'spconv')
    # spconv not importable: 'auto' falls back, 'spconv' is a one-line error
    monkeypatch.setitem(sys.modules, 'spconv', None)
    monkeypatch.setattr(spconv_backend, '_spconv', None)
    assert resolve_backend('auto', 'cuda') == 'torch'
    with pytest.raises(ImportError) as err:
        SubMConv3d(4, 4, backend='spconv')
    msg = str(err.value)
    assert '\n' not in msg
    assert 'pip install spconv`' in msg and 'spconv-cu121' in msg
