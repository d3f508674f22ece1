"""The torch backend against dense ``conv3d`` / ``conv_transpose3d``.

A small batch of occupied cells is scattered into a dense grid (zeros
elsewhere); the dense convolution, read at the occupied cells, is what the
sparse one must give, forward and gradients (input features and weights),
in float64.
"""
import pytest
import torch
import torch.nn.functional as F

from dbbd.models.sparse import (SparseConv3d, SparseInverseConv3d,
                                SparseTensor, SubMConv3d, VoxelSet)

G, B = 6, 2     # grid edge (even: stride 2 divides it), scenes


def _coords(gen, n=150, shuffled=True):
    """Unique occupied cells of B scenes, in shuffled row order (or sorted
    by batch, x, y, z, as voxelisation makes them)."""
    c = torch.cat([torch.randint(0, B, (n, 1), generator=gen),
                   torch.randint(0, G, (n, 3), generator=gen)], 1)
    c = torch.unique(c, dim=0)
    return c[torch.randperm(len(c), generator=gen)] if shuffled else c


def _dense(feat, coords, size):
    d = feat.new_zeros(B, feat.shape[1], size, size, size)
    d[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]] = feat
    return d


def _at(dense, coords):
    return dense[coords[:, 0], :, coords[:, 1], coords[:, 2], coords[:, 3]]


@pytest.fixture(params=[True, False], ids=['shuffled', 'sorted'])
def data(request):
    gen = torch.Generator().manual_seed(0)
    coords = _coords(gen, shuffled=request.param)
    feat = torch.randn(len(coords), 3, generator=gen, dtype=torch.float64)
    return coords, feat, gen


def _dense_weight(weight):
    """A ``(C_out, K, K, K, C_in)`` parameter as ``conv3d``'s weight,
    written out here: kernel axes in place, and a 1x1x1 kernel read as
    spconv reads it (its storage is one (C_in, C_out) matrix)."""
    c_out, k, c_in = weight.shape[0], weight.shape[1], weight.shape[-1]
    if k == 1:
        return weight.reshape(c_in, c_out).t().reshape(c_out, c_in, 1, 1, 1)
    return weight.permute(0, 4, 1, 2, 3)


def _backward(out, seed):
    """Backward of ``sum(out * R)`` for a fixed random R."""
    r = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed),
                    dtype=out.dtype)
    (out * r).sum().backward()


@pytest.mark.parametrize('kernel_size', [3, 5, 1])
def test_submanifold_matches_dense(data, kernel_size):
    coords, feat, _ = data
    conv = SubMConv3d(3, 4, kernel_size, bias=True).double()
    x = feat.clone().requires_grad_()
    inp = SparseTensor(x, coords)
    out = conv(inp)
    assert out.voxels is inp.voxels
    _backward(out.feat, 1)

    xd = _dense(feat, coords, G).requires_grad_()
    wd = _dense_weight(conv.weight.detach()).clone().requires_grad_()
    bd = conv.bias.detach().clone().requires_grad_()
    ref = _at(F.conv3d(xd, wd, bd, padding=kernel_size // 2), coords)
    _backward(ref, 1)

    torch.testing.assert_close(out.feat, ref)
    torch.testing.assert_close(x.grad, _at(xd.grad, coords))
    torch.testing.assert_close(_dense_weight(conv.weight.grad), wd.grad)
    torch.testing.assert_close(conv.bias.grad, bd.grad)


def test_strided_matches_dense(data):
    coords, feat, _ = data
    conv = SparseConv3d(3, 4, kernel_size=2, stride=2, bias=False).double()
    x = feat.clone().requires_grad_()
    out = conv(SparseTensor(x, coords))
    _backward(out.feat, 2)

    # the coarse voxels: every cell whose 2x2x2 block holds a fine voxel
    occupied = _dense(torch.ones(len(coords), 1, dtype=torch.float64),
                      coords, G)
    block = F.max_pool3d(occupied, 2)[:, 0].nonzero()
    assert torch.equal(torch.unique(out.coords, dim=0), block)
    assert len(out.coords) == len(block)

    xd = _dense(feat, coords, G).requires_grad_()
    wd = _dense_weight(conv.weight.detach()).clone().requires_grad_()
    ref = _at(F.conv3d(xd, wd, stride=2), out.coords)
    _backward(ref, 2)

    torch.testing.assert_close(out.feat, ref)
    torch.testing.assert_close(x.grad, _at(xd.grad, coords))
    torch.testing.assert_close(_dense_weight(conv.weight.grad), wd.grad)
    assert out.voxels.parent[0] is not None


def test_inverse_matches_dense(data):
    coords, feat, gen = data
    fine = SparseTensor(feat, coords)
    coarse = SparseConv3d(3, 4, 2, bias=False).double()(fine)
    y = torch.randn(coarse.feat.shape, generator=gen,
                    dtype=torch.float64).requires_grad_()
    conv = SparseInverseConv3d(4, 5, kernel_size=2, bias=True).double()
    out = conv(coarse.replace_feat(y))
    # back onto the fine voxels, in their row order
    assert out.voxels is fine.voxels
    _backward(out.feat, 3)

    yd = _dense(y.detach(), coarse.coords, G // 2).requires_grad_()
    # conv_transpose3d's weight is (C_in, C_out, K, K, K)
    wd = conv.weight.detach().permute(4, 0, 1, 2, 3).clone().requires_grad_()
    bd = conv.bias.detach().clone().requires_grad_()
    ref = _at(F.conv_transpose3d(yd, wd, bd, stride=2), coords)
    _backward(ref, 3)

    torch.testing.assert_close(out.feat, ref)
    torch.testing.assert_close(y.grad, _at(yd.grad, coarse.coords))
    torch.testing.assert_close(conv.weight.grad.permute(4, 0, 1, 2, 3),
                               wd.grad)
    torch.testing.assert_close(conv.bias.grad, bd.grad)


def test_kernel_map_built_once_per_voxel_set(data):
    coords, feat, _ = data
    x = SparseTensor(feat.float(), coords)
    a, b = SubMConv3d(3, 3), SubMConv3d(3, 3)
    y = b(a(x))
    assert y.voxels is x.voxels
    kmaps = [v for k, v in x.voxels.cache.items() if k[0] == 'subm']
    assert len(kmaps) == 1
    # a second use of the set reuses the cached map object
    a(x)
    assert [v for k, v in x.voxels.cache.items()
            if k[0] == 'subm'] == kmaps


def test_bad_input_one_line_errors(data):
    coords, feat, _ = data
    with pytest.raises(ValueError, match='duplicate voxels'):
        VoxelSet(torch.cat([coords, coords[:1]]), B)
    with pytest.raises(ValueError, match='must lie in'):
        VoxelSet(coords - 1, B)
    with pytest.raises(ValueError, match='expects 4 input channels'):
        SubMConv3d(4, 4)(SparseTensor(feat, coords))
    with pytest.raises(ValueError, match='needs a tensor made by a '
                                         'SparseConv3d'):
        SparseInverseConv3d(3, 3)(SparseTensor(feat, coords))
    with pytest.raises(ValueError, match='odd kernel_size'):
        SubMConv3d(3, 3, 2)
    with pytest.raises(ValueError, match="backend must be one of"):
        SubMConv3d(3, 3, backend='cuda')


def _chain_grads(device, coords, feat, modules):
    """Submanifold -> strided -> submanifold -> inverse on ``device``:
    output and every gradient, back on the CPU."""
    mods = [m.to(device) for m in modules]
    for m in mods:
        m.zero_grad(set_to_none=True)
    x = feat.to(device).requires_grad_()
    fine = SparseTensor(x, coords.to(device))
    out = mods[3](mods[2](mods[1](mods[0](fine))))
    assert out.voxels is fine.voxels
    _backward(out.feat.cpu(), 4)
    grads = [x.grad] + [p.grad for m in mods for p in m.parameters()]
    return [out.feat.detach().cpu()] + [g.cpu() for g in grads]


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA GPU')
def test_torch_backend_on_cuda_matches_cpu(data):
    coords, feat, _ = data
    modules = [SubMConv3d(3, 4), SparseConv3d(4, 5), SubMConv3d(5, 5),
               SparseInverseConv3d(5, 2)]
    modules = [m.double() for m in modules]
    cpu = _chain_grads('cpu', coords, feat, modules)
    cuda = _chain_grads('cuda', coords, feat, modules)
    for a, b in zip(cpu, cuda):
        torch.testing.assert_close(b, a)
