"""The registered parts one by one: shapes, gradients, modes."""
import math

import pytest
import torch
import torch.nn.functional as F

from dbbd.models.utils import MLP, linear_cat, segment_sum
from dbbd.registry import MODELS


def _regions(m=120, r=7, c=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    region = torch.randint(0, r, (m, ), generator=g).sort().values
    feat = torch.randn(m, c, generator=g)
    coord = torch.randn(m, 3, generator=g)
    return feat, coord, region, r


def test_linear_cat_equals_linear_of_the_concatenation():
    lin = torch.nn.Linear(4 + 3 + 5, 6)
    a, b = torch.randn(10, 4), torch.randn(10, 3)
    table, idx = torch.randn(3, 5), torch.randint(0, 3, (10, ))
    ref = lin(torch.cat([a, b, table[idx]], 1))
    torch.testing.assert_close(linear_cat(lin, [a, b, (table, idx)]), ref)
    torch.testing.assert_close(linear_cat(lin, [(table, idx), a, b]),
                               lin(torch.cat([table[idx], a, b], 1)))
    with pytest.raises(ValueError, match='do not match'):
        linear_cat(lin, [a, b])


@pytest.mark.parametrize('enc_type', ['PointNetEncoder',
                                      'TwoStagePointNetEncoder'])
@pytest.mark.parametrize('pooling', ['max', 'mean'])
def test_encoders_shapes_pooling_and_region_independence(enc_type, pooling):
    enc = MODELS.build(dict(type=enc_type, in_channels=16, out_channels=12,
                            pooling=pooling))
    assert (enc.in_channels, enc.out_channels) == (16, 12)
    feat, coord, region, r = _regions()
    pf, rf = enc(feat, coord, region, r + 1)  # region r is empty
    assert pf.shape == (120, 12) and rf.shape == (r + 1, 12)
    assert not rf[r].any()
    if enc_type == 'PointNetEncoder':
        pool = pf[region == 2].max(0).values if pooling == 'max' else \
            pf[region == 2].mean(0)
        torch.testing.assert_close(rf[2], pool)
    # a region alone gives the same as inside the batch
    sel = region == 3
    pf3, rf3 = enc(feat[sel], coord[sel], torch.zeros(int(sel.sum()),
                                                      dtype=torch.long), 1)
    torch.testing.assert_close(pf3, pf[sel], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(rf3[0], rf[3], atol=1e-5, rtol=1e-5)
    (pf.sum() + rf.sum()).backward()
    for name, p in enc.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_pointnet_defaults_are_the_method_defaults():
    enc = MODELS.build(dict(type='PointNetEncoder', in_channels=96))
    dims = [m.out_features for m in enc.modules()
            if isinstance(m, torch.nn.Linear)]
    assert dims == [64, 128, 96] and enc.pooling == 'max'
    with pytest.raises(ValueError, match='pooling'):
        MODELS.build(dict(type='PointNetEncoder', in_channels=4,
                          pooling='sum'))


def test_propagator_equals_mlp_on_gathered_parent_features():
    prop = MODELS.build(dict(type='MLPPropagator', in_channels=10,
                             hidden_channels=20, out_channels=8))
    parent_feat = torch.randn(4, 10, requires_grad=True)
    coord = torch.randn(30, 3)
    parent = torch.randint(0, 4, (30, ))
    out = prop(parent_feat, coord, parent)
    assert out.shape == (30, 8)
    ref = prop.mlp(torch.cat([parent_feat[parent], coord], 1))
    torch.testing.assert_close(out, ref)
    layers = [type(m).__name__ for m in prop.mlp.layers]
    assert layers == ['Linear', 'LayerNorm', 'GELU', 'Linear']
    out.sum().backward()
    assert parent_feat.grad.abs().sum() > 0


def _children(c=40, r=9, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    parent = torch.randint(0, r - 1, (c, ), generator=g)  # parent r-1: none
    return (torch.randn(c, d, generator=g), torch.randn(c, 3, generator=g),
            parent, r)


@pytest.mark.parametrize('mode', ['max', 'mean', 'attention'])
@pytest.mark.parametrize('pre_mlp', [False, True])
def test_aggregator_modes(mode, pre_mlp):
    agg = MODELS.build(dict(type='Aggregator', channels=16, mode=mode,
                            pre_mlp=pre_mlp))
    child, offset, parent, r = _children()
    out, w = agg(child, offset, parent, r, return_weights=True)
    assert out.shape == (r, 16) and torch.isfinite(out).all()
    assert not out[r - 1].any()  # no children: 0 (DBBD puts the leaf there)
    if mode == 'attention':
        sums = segment_sum(w, parent, r)[:r - 1]
        present = torch.bincount(parent, minlength=r)[:r - 1] > 0
        torch.testing.assert_close(sums[present],
                                   torch.ones(int(present.sum())))
        assert (w > 0).all()
        # softmax ignores a constant shift of the scores: a bias on the
        # last score layer could never learn, so there is none
        assert agg.score_mlp.layers[-1].bias is None
    else:
        assert w is None
    # every parent here has several children, so every parameter (the
    # score layers included) moves the output
    assert (torch.bincount(parent, minlength=r)[:r - 1] > 1).all()
    out.sum().backward()
    for name, p in agg.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_aggregator_spatial_context_changes_the_result():
    child, offset, parent, r = _children()
    torch.manual_seed(0)
    with_ctx = MODELS.build(dict(type='Aggregator', channels=16))
    torch.manual_seed(0)
    without = MODELS.build(dict(type='Aggregator', channels=16,
                                spatial_context=False))
    a = with_ctx(child, offset, parent, r)
    b = without(child, offset, parent, r)
    c = with_ctx(child, offset + 1.0, parent, r)
    assert not torch.allclose(a, b) and not torch.allclose(a, c)
    torch.testing.assert_close(
        b[:r - 1], torch.stack([child[parent == p].max(0).values
                                for p in range(r - 1)]))
    with pytest.raises(ValueError, match='mode'):
        MODELS.build(dict(type='Aggregator', channels=4, mode='sum'))


def test_projection_head_unit_norm_and_batch_of_one():
    head = MODELS.build(dict(type='ProjectionHead', in_channels=12,
                             out_channels=8))
    layers = [type(m).__name__ for m in head.mlp.layers]
    assert layers == ['Linear', 'LayerNorm', 'ReLU', 'Linear']
    for n in (1, 5):
        y = head(torch.randn(n, 12))
        assert y.shape == (n, 8)
        torch.testing.assert_close(y.norm(dim=1), torch.ones(n))


def test_mlp_rejects_unknown_activation():
    with pytest.raises(ValueError, match='act'):
        MLP(3, [4], 5, act='tanh')


def test_info_nce_by_hand():
    loss = MODELS.build(dict(type='InfoNCELoss', temperature=1.0))
    q = torch.eye(2)
    # logits [[1, 0], [0, 1]]: each row -log(e / (e + 1))
    expect = math.log(1 + math.exp(-1))
    assert loss(q, q).item() == pytest.approx(expect, abs=1e-6)
    loss_t = MODELS.build(dict(type='InfoNCELoss', temperature=0.5))
    k = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # positives swapped
    # logits [[0, 2], [2, 0]]: -log(1 / (1 + e^2))
    assert loss_t(q, k).item() == pytest.approx(math.log(1 + math.exp(2)),
                                                abs=1e-5)
    one = torch.randn(1, 4, requires_grad=True)
    assert loss(one, one).item() == 0.0
    with pytest.raises(ValueError):
        loss(q, torch.zeros(3, 2))
    with pytest.raises(ValueError):
        MODELS.build(dict(type='InfoNCELoss', temperature=0))


def _unit(*shape):
    return F.normalize(torch.randn(*shape), dim=-1)


def test_region_loss_levels_weights_and_skips():
    info = MODELS.build(dict(type='InfoNCELoss'))
    q = [_unit(1, 8), _unit(5, 8), _unit(9, 8)]
    k = [_unit(1, 8), _unit(5, 8), _unit(9, 8)]
    loss, per = MODELS.build(dict(type='RegionLoss'))(q, k)
    assert sorted(per) == [1, 2]  # level 0 has one region: skipped
    expect = (info(q[1], k[1]) + info(q[2], k[2])) / 2
    torch.testing.assert_close(loss, expect)
    weighted, _ = MODELS.build(dict(type='RegionLoss',
                                    level_weights=[5.0, 1.0, 3.0]))(q, k)
    torch.testing.assert_close(
        weighted, (info(q[1], k[1]) + 3 * info(q[2], k[2])) / 4)
    with pytest.raises(ValueError, match='level_weights'):
        MODELS.build(dict(type='RegionLoss', level_weights=[1.0]))(q, k)
    # nothing to contrast: 0, still differentiable
    qa = _unit(1, 8).requires_grad_()
    zero, per = MODELS.build(dict(type='RegionLoss'))([qa], [_unit(1, 8)])
    assert zero.item() == 0.0 and per == {}
    zero.backward()
    assert qa.grad is not None


def test_point_loss_sampling_is_seeded_by_the_batch_only():
    from dbbd.structures.sample_order import point_sample_order
    pl = MODELS.build(dict(type='PointLoss', num_samples=16))
    torch.manual_seed(0)
    state = torch.get_rng_state()
    order = torch.from_numpy(point_sample_order([3, 7], 100))
    assert torch.equal(torch.get_rng_state(), state)  # global RNG untouched
    # a permutation, a function of the seeds alone
    assert torch.equal(order.sort().values, torch.arange(100))
    assert torch.equal(order, torch.from_numpy(point_sample_order(
        torch.tensor([3, 7]), 100)))
    assert not torch.equal(order, torch.from_numpy(point_sample_order(
        [3, 8], 100)))
    a = pl.sample(order)
    assert torch.equal(a, order[:16]) and a.unique().numel() == 16
    small = torch.from_numpy(point_sample_order([3, 7], 10))
    assert torch.equal(pl.sample(small).sort().values, torch.arange(10))
    q, k = _unit(100, 8), _unit(100, 8)
    head = MODELS.build(dict(type='ProjectionHead', in_channels=8,
                             out_channels=4))
    v1 = pl(q, k, order, head)
    info = MODELS.build(dict(type='InfoNCELoss'))
    torch.testing.assert_close(v1, info(head(q[a]), head(k[a])))


def test_dbbd_loss_logged_total_is_alpha_region_plus_beta_point():
    from mmengine.model import BaseModel
    crit = MODELS.build(dict(type='DBBDLoss', alpha=0.7, beta=0.3,
                             point_loss=dict(type='PointLoss',
                                             num_samples=20)))
    q = [_unit(1, 8), _unit(6, 8)]
    k = [_unit(1, 8), _unit(6, 8)]
    pq, pk, order = torch.randn(50, 8), torch.randn(50, 8), torch.randperm(50)
    out = crit(q, k, pq, pk, order)
    assert set(out) == {'loss_region', 'loss_point', 'region_l1'}
    total, log_vars = BaseModel.parse_losses(None, out)
    torch.testing.assert_close(total,
                               out['loss_region'] + out['loss_point'])
    assert log_vars['loss'] is total or torch.equal(log_vars['loss'], total)
    # one level counts: the region term is its InfoNCE, weighted
    torch.testing.assert_close(out['loss_region'], 0.7 * out['region_l1'])
    info = MODELS.build(dict(type='InfoNCELoss'))
    torch.testing.assert_close(out['region_l1'], info(q[1], k[1]))
    idx = order[:20]
    torch.testing.assert_close(out['loss_point'],
                               0.3 * info(pq[idx], pk[idx]))


def test_unknown_type_names_the_registry():
    with pytest.raises(KeyError, match='model'):
        MODELS.build(dict(type='PointNetEncodr', in_channels=3))


def _plain(mlp, x):
    """The MLP's modules called one after the other (autograd keeps every
    intermediate)."""
    h = x
    for layer in mlp.layers:
        h = layer(h)
    return h


@pytest.mark.parametrize('act,last', [('gelu', False), ('relu', False),
                                      ('gelu', True)])
def test_mlp_recomputing_its_norms_equals_the_plain_modules(act, last):
    torch.manual_seed(0)
    mlp = MLP(7, [11, 5], 6, act=act, last_norm_act=last).double()
    with torch.no_grad():  # non-trivial LayerNorm affine parameters
        for m in mlp.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    x = torch.randn(40, 7, dtype=torch.float64)
    up = torch.randn(40, 6, dtype=torch.float64)
    grads = []
    for fn in (mlp, lambda t: _plain(mlp, t)):
        mlp.zero_grad()
        a = x.clone().requires_grad_()
        out = fn(a)
        (out * up).sum().backward()
        grads.append((out.detach(), a.grad,
                      [p.grad.clone() for p in mlp.parameters()]))
    (o1, g1, p1), (o2, g2, p2) = grads
    torch.testing.assert_close(o1, o2)
    torch.testing.assert_close(g1, g2)
    for a, b in zip(p1, p2):
        torch.testing.assert_close(a, b)


def test_mlp_recompute_under_autocast_matches_the_plain_modules():
    torch.manual_seed(0)
    mlp = MLP(8, [16, 16], 12)
    x = torch.randn(64, 8)
    res = []
    for fn in (mlp, lambda t: _plain(mlp, t)):
        mlp.zero_grad()
        a = x.clone().requires_grad_()
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = fn(a)
        out.float().sum().backward()
        res.append((out, a.grad, [p.grad for p in mlp.parameters()]))
    assert res[0][0].dtype == res[1][0].dtype == torch.bfloat16
    torch.testing.assert_close(res[0][0], res[1][0])

    def rel(a, b):  # bf16 products round differently by an ulp here and
        return float((a - b).norm() / b.norm())  # there: compare norms
    assert rel(res[0][1], res[1][1]) < 1e-2
    for a, b in zip(res[0][2], res[1][2]):
        assert a.dtype == torch.float32
        assert rel(a, b) < 1e-2


def test_mlp_keeps_one_tensor_per_hidden_layer_for_backward():
    """What autograd keeps after the forward pass (every tensor saved for
    backward): the input of each LayerNorm, not its output and the
    activation's too."""
    from torch.autograd.graph import saved_tensors_hooks
    mlp = MLP(8, [32, 32], 16)
    x = torch.randn(100, 8, requires_grad=True)

    def saved_bytes(fn):
        seen = {}

        def pack(t):
            seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t
        with saved_tensors_hooks(pack, lambda t: t):
            fn(x)
        return sum(seen.values())

    rows = 100 * 32 * 4
    fused, plain = saved_bytes(mlp), saved_bytes(lambda t: _plain(mlp, t))
    assert plain >= 6 * rows  # 3 per hidden layer
    assert fused <= 2 * rows + 100 * 8 * 4 + 2 * (32 * 32 + 32) * 4 + \
        (8 * 32 + 32 * 16) * 4 + 4 * 32 * 4
