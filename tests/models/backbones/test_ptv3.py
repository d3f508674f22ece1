"""PointTransformerV3, the serialized-attention scene backbone: tiny widths
(8 and 16 channels), patches of 16 voxels, 20 cm voxels, synthetic rooms
of a few hundred points. References are computed here: attention patch by
patch, parents cell by cell."""
import pytest
import torch

from dbbd.datasets.synthetic import make_room
from dbbd.models.backbones.ptv3 import (DropPath, SerializedAttention,
                                        SerializedPooling,
                                        SerializedUnpooling, serialize)
from dbbd.models.sparse import VoxelSet, set_backend, spconv_available
from dbbd.models.sparse.serialization import ORDERS
from dbbd.registry import MODELS

TINY = dict(type='PointTransformerV3', in_channels=6, order=ORDERS,
            stride=(2, 2), enc_depths=(1, 1, 2), enc_channels=(8, 16, 16),
            enc_num_head=(1, 2, 2), enc_patch_size=(16, 16, 16),
            dec_depths=(1, 2), dec_channels=(8, 16), dec_num_head=(2, 2),
            dec_patch_size=(16, 16), drop_path=0.0, voxel_size=0.2)


def _scene(seed, n):
    room = make_room(n, seed=seed)
    coord = torch.from_numpy(room['coord']).float()
    feat = torch.cat([torch.from_numpy(room['color']).float() / 255,
                      torch.from_numpy(room['normal']).float()], 1)
    return coord, feat


def _batch(*scenes):
    coord = torch.cat([c for c, _ in scenes])
    feat = torch.cat([f for _, f in scenes])
    sizes = torch.tensor([0] + [len(c) for c, _ in scenes])
    return coord, feat, sizes.cumsum(0)


def _randomise_norms(model, seed):
    """BatchNorm statistics and every norm's affine parameters away from
    their identity start, so eval mode and the norms are not no-ops."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.LayerNorm)):
            n = m.weight.numel()
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


def _voxels(counts, seed, side=8):
    """Scenes of ``counts`` distinct random cells of a ``side^3`` grid, rows
    shuffled across scenes (the levels must not rely on row order)."""
    gen = torch.Generator().manual_seed(seed)
    rows = []
    for b, n in enumerate(counts):
        cells = torch.randperm(side ** 3, generator=gen)[:n]
        grid = torch.stack([cells // side ** 2, cells // side % side,
                            cells % side], 1)
        rows.append(torch.cat([torch.full((n, 1), b), grid], 1))
    coords = torch.cat(rows)
    coords = coords[torch.randperm(len(coords), generator=gen)]
    return VoxelSet(coords, len(counts))


# ----------------------------------------------------------------------
# Names and shapes
# ----------------------------------------------------------------------
def test_pointcept_pt_v3m1_names_and_shapes_for_the_default_settings():
    model = MODELS.build(dict(type='PointTransformerV3', in_channels=6))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # Pointcept's PT-v3m1 with its default arguments (spconv 2.x weights
    # are (out, k, k, k, in))
    expected = {
        'embedding.stem.conv.weight': (32, 5, 5, 5, 6),
        'embedding.stem.norm.weight': (32, ),
        'embedding.stem.norm.running_var': (32, ),
        'enc.enc0.block0.cpe.0.weight': (32, 3, 3, 3, 32),
        'enc.enc0.block0.cpe.0.bias': (32, ),
        'enc.enc0.block0.cpe.1.weight': (32, 32),
        'enc.enc0.block0.cpe.2.weight': (32, ),
        'enc.enc0.block0.norm1.0.weight': (32, ),
        'enc.enc0.block0.attn.qkv.weight': (96, 32),
        'enc.enc0.block0.attn.qkv.bias': (96, ),
        'enc.enc0.block0.attn.proj.weight': (32, 32),
        'enc.enc0.block0.norm2.0.bias': (32, ),
        'enc.enc0.block0.mlp.0.fc1.weight': (128, 32),
        'enc.enc0.block0.mlp.0.fc2.weight': (32, 128),
        'enc.enc1.down.proj.weight': (64, 32),
        'enc.enc1.down.norm.0.running_mean': (64, ),
        'enc.enc3.block5.attn.qkv.weight': (768, 256),
        'enc.enc4.down.proj.weight': (512, 256),
        'enc.enc4.block1.mlp.0.fc2.weight': (512, 2048),
        'dec.dec3.up.proj.0.weight': (256, 512),
        'dec.dec3.up.proj.1.weight': (256, ),
        'dec.dec3.up.proj_skip.0.weight': (256, 256),
        'dec.dec3.up.proj_skip.1.num_batches_tracked': (),
        'dec.dec2.up.proj.0.weight': (128, 256),
        'dec.dec2.up.proj_skip.0.weight': (128, 128),
        'dec.dec1.up.proj_skip.0.weight': (64, 64),
        'dec.dec0.up.proj.0.weight': (64, 64),
        'dec.dec0.up.proj_skip.0.weight': (64, 32),
        'dec.dec0.block1.attn.qkv.weight': (192, 64),
    }
    for key, shape in expected.items():
        assert shapes.get(key) == shape, key
    assert not any(k.startswith('enc.enc0.down') for k in shapes)
    assert len(shapes) == 486
    # the paper's 46.2 M parameters
    assert sum(p.numel() for p in model.parameters()) == 46_166_272
    assert (model.out_channels, model.num_stages) == (64, 5)
    assert MODELS.build(dict(TINY)).out_channels == 8


# ----------------------------------------------------------------------
# Serialized attention
# ----------------------------------------------------------------------
def _attention_patch_by_patch(attn, feat, level, k):
    """Plain softmax attention, one patch at a time: a scene of n voxels
    in order k is cut into patches of P; when n > P and P does not divide
    n the last patch is its last P voxels, and each voxel takes the output
    of the patch it was cut into; a scene of n <= P is one patch."""
    h, c, p = attn.num_heads, attn.channels, attn.patch_size
    qkv = attn.qkv(feat)
    out = torch.zeros(len(feat), c)
    start = 0
    for n in level.counts.tolist():
        rows = level.order[k][start:start + n]
        start += n
        whole = n // p
        patches = [(rows[j * p:(j + 1) * p], range(j * p, (j + 1) * p), j * p)
                   for j in range(whole)]
        if n % p:
            first = max(n - p, 0)
            patches.append((rows[first:], range(whole * p, n), first))
        for patch, owned, first in patches:
            q, key, v = qkv[patch].view(len(patch), 3, h, c // h).unbind(1)
            w = torch.softmax(torch.einsum('lhd,mhd->hlm', q, key)
                              * attn.scale, -1)
            o = torch.einsum('hlm,mhd->lhd', w, v).reshape(len(patch), c)
            for t in owned:
                out[rows[t]] = o[t - first]
    return attn.proj(out)


@pytest.mark.parametrize('counts', [(37, 32, 5, 16), (40, 17), (9, 5)])
def test_patch_attention_equals_plain_attention_patch_by_patch(counts):
    # 37: two patches and the last 16; 32: two; 5: one masked patch; 16:
    # one; 17: one and the last 16 (15 repeated); 9 and 5 alone: patches of
    # 9 slots, 4 masked in the second
    torch.manual_seed(0)
    voxels = _voxels(counts, seed=1)
    feat = torch.randn(len(voxels), 8)
    level = serialize(feat, voxels, ORDERS)
    attn = SerializedAttention(8, num_heads=2, patch_size=16).eval()
    for k in range(len(ORDERS)):
        attn.order_index = k
        with torch.no_grad():
            got = attn(feat, level)
            want = _attention_patch_by_patch(attn, feat, level, k)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_output_does_not_depend_on_the_input_point_order():
    model = _randomise_norms(MODELS.build(dict(TINY)), 2)
    a, b = _scene(0, 300), _scene(1, 250)
    coord, feat, offset = _batch(a, b)
    gen = torch.Generator().manual_seed(3)
    perm = torch.cat([torch.randperm(300, generator=gen),
                      300 + torch.randperm(250, generator=gen)])
    for train in (False, True):   # training: the same order shuffles
        model.train(train)
        with torch.no_grad():
            torch.manual_seed(4)
            first = model(coord, feat, offset)
            torch.manual_seed(4)
            second = model(coord[perm], feat[perm], offset)
        assert first.shape == (550, 8)
        torch.testing.assert_close(second, first[perm], rtol=1e-4,
                                   atol=1e-5)


def _code_rows(code):
    return sorted(map(tuple, code.tolist()))


def test_training_shuffles_the_orders_per_stage_and_eval_does_not():
    """Serialization and every pooling put the orders in a random
    sequence in training (block i of a stage follows the i-th); eval keeps
    the configured sequence."""
    voxels = _voxels((40, 30), seed=0)
    feat = torch.randn(len(voxels), 8)
    plain = serialize(feat, voxels, ORDERS)
    pool = SerializedPooling(8, 8)
    shuffled, pooled = set(), set()
    for seed in range(4):
        torch.manual_seed(seed)
        level = serialize(feat, voxels, ORDERS, shuffle=True)
        assert _code_rows(level.code) == _code_rows(plain.code)
        shuffled.add(tuple(map(tuple, level.code.tolist())))
        torch.manual_seed(seed)
        coarse = pool.train()(plain)
        pooled.add(tuple(map(tuple, coarse.code.tolist())))
    assert len(shuffled) > 1 and len(pooled) > 1
    coarse = pool.eval()(plain)
    assert torch.equal(coarse.code[:, coarse.cluster], plain.code >> 3)

    # through the model: one stage (its serialization) and three stages
    # (poolings too); shuffle_orders=False is deterministic in training
    one_stage = dict(TINY, stride=(), enc_depths=(2, ), enc_channels=(8, ),
                     enc_num_head=(1, ), enc_patch_size=(16, ), dec_depths=(),
                     dec_channels=(), dec_num_head=(), dec_patch_size=())
    batch = _batch(_scene(0, 300))
    for cfg in (one_stage, TINY):
        for shuffle in (True, False):
            model = MODELS.build(dict(cfg, shuffle_orders=shuffle))
            with torch.no_grad():
                model.eval()
                assert torch.equal(model(*batch), model(*batch))
                model.train()
                torch.manual_seed(0)
                one = model(*batch)
                torch.manual_seed(1)
                other = model(*batch)
            assert torch.equal(one, other) != shuffle


# ----------------------------------------------------------------------
# Pooling and unpooling
# ----------------------------------------------------------------------
@pytest.mark.parametrize('stride', [2, 4])
def test_pooling_then_unpooling_round_trip(stride):
    torch.manual_seed(0)
    voxels = _voxels((60, 45), seed=2)
    feat = torch.randn(len(voxels), 8)
    level = serialize(feat, voxels, ORDERS)
    pool = _randomise_norms(SerializedPooling(8, 16, stride), 5).eval()
    unpool = _randomise_norms(SerializedUnpooling(16, 8, 12), 6).eval()
    with torch.no_grad():
        coarse = pool(level)
        back = unpool(coarse)
    bits = stride.bit_length() - 1
    # parents: one per occupied coarse cell of each scene
    fine = voxels.coords
    parent_of = torch.cat([fine[:, :1], fine[:, 1:] >> bits], 1)
    cells = {tuple(c) for c in parent_of.tolist()}
    got = [tuple(c) for c in coarse.voxels.coords.tolist()]
    assert sorted(got) == sorted(cells) and len(got) == len(cells)
    assert torch.equal(coarse.voxels.coords[coarse.cluster], parent_of)
    # every child's code, shifted, is its parent's, in every order
    assert torch.equal(coarse.code[:, coarse.cluster],
                       level.code >> (3 * bits))
    assert coarse.depth == level.depth - bits
    for k in range(len(ORDERS)):
        sorted_code = coarse.code[k][coarse.order[k]]
        assert bool((sorted_code[1:] > sorted_code[:-1]).all())
        assert torch.equal(coarse.inverse[k][coarse.order[k]],
                           torch.arange(len(got)))
    assert coarse.counts.tolist() == [
        sum(1 for c in cells if c[0] == b) for b in (0, 1)]
    # features: max of the children's projections, then BatchNorm, GELU
    with torch.no_grad():
        proj = pool.proj(feat)
        rows = {c: i for i, c in enumerate(got)}
        pooled = torch.full((len(got), 16), -float('inf'))
        for i, c in enumerate(parent_of.tolist()):
            pooled[rows[tuple(c)]] = torch.maximum(pooled[rows[tuple(c)]],
                                                   proj[i])
        torch.testing.assert_close(coarse.feat,
                                   pool.act(pool.norm(pooled)))
        # back on the fine voxels: own skip projection + parent's
        want = unpool.proj_skip(feat) + unpool.proj(coarse.feat)[
            [rows[tuple(c)] for c in parent_of.tolist()]]
    assert back.voxels is voxels and torch.equal(back.order, level.order)
    torch.testing.assert_close(back.feat, want)


def test_encoder_only_mode_upcasts_every_stage_to_the_points():
    model = _randomise_norms(MODELS.build(dict(TINY, enc_mode=True)), 3)
    assert model.dec is None and model.out_channels == 8 + 16 + 16
    coord, feat, offset = _batch(_scene(0, 300))
    model.eval()
    with torch.no_grad():
        out = model(coord, feat, offset)
    assert out.shape == (300, 40)
    # the coarsest stage's columns are one value per cell of the 4x
    # coarser grid (80 cm), the grid of voxelize (floor(coord / 0.2),
    # shifted to start at 0)
    grid = torch.floor(coord.double() / 0.2).long()
    cell = (grid - grid.min(0).values) >> 2
    key = (cell * torch.tensor([1 << 20, 1 << 10, 1])).sum(1)
    _, group = torch.unique(key, return_inverse=True)
    last = out[:, 24:]
    first_of = torch.zeros(int(group.max()) + 1, dtype=torch.long)
    first_of[group] = torch.arange(300)
    torch.testing.assert_close(last, last[first_of[group]])
    # and not one value for the whole scene
    assert last.std(0).max() > 1e-3


# ----------------------------------------------------------------------
# Gradients, backends, training
# ----------------------------------------------------------------------
def test_gradients_reach_every_parameter_and_every_input_slice():
    model = _randomise_norms(MODELS.build(dict(TINY)), 1).train()
    coord, feat, offset = _batch(_scene(0, 300), _scene(1, 250))
    feat = feat.clone().requires_grad_(True)
    out = model(coord, feat, offset)
    weight = torch.randn(out.shape, generator=torch.Generator().manual_seed(0))
    (out * weight).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # every scene and every input channel reaches the output
    for s, e in ((0, 300), (300, 550)):
        assert (feat.grad[s:e].abs().sum(0) > 0).all()

    # a zeroed slice of the input is noticed, in its own scene only
    # (eval: patches, pooling and convolutions never mix scenes)
    model.eval()
    with torch.no_grad():
        base = model(coord, feat, offset)
        zeroed = feat.detach().clone()
        zeroed[300:, 3:] = 0    # the normals of the second scene
        other = model(coord, zeroed, offset)
    torch.testing.assert_close(other[:300], base[:300], rtol=1e-5,
                               atol=1e-6)
    assert (other[300:] - base[300:]).abs().max() > 1e-3


def _train_step(model, batch):
    model.zero_grad()
    torch.manual_seed(0)
    out = model(*batch)
    out.float().square().mean().backward()
    return out.detach(), {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.skipif(not spconv_available(),
                    reason='spconv is not installed (pip install spconv)')
def test_backends_agree_on_ptv3():
    # float64, as for SpUNet: batch-norm backward passes amplify float32
    # rounding
    model = MODELS.build(dict(TINY, drop_path=0.1)).train().double()
    coord, feat, offset = _batch(_scene(0, 300), _scene(1, 250))
    batch = coord.double(), feat.double(), offset
    out_t, grads_t = _train_step(set_backend(model, 'torch'), batch)
    grads_t = {n: g.clone() for n, g in grads_t.items()}
    out_s, grads_s = _train_step(set_backend(model, 'spconv'), batch)
    torch.testing.assert_close(out_s, out_t, rtol=1e-9, atol=1e-10)
    for name in grads_t:
        torch.testing.assert_close(
            grads_s[name], grads_t[name], rtol=1e-7, atol=1e-10,
            msg=lambda m, n=name: f'{n}: {m}')


@pytest.mark.parametrize('amp', [False, True])
@pytest.mark.parametrize('backend', [
    'torch', pytest.param('spconv', marks=pytest.mark.skipif(
        not spconv_available(), reason='spconv is not installed'))])
def test_trains_a_step_on_cpu_and_under_bf16_autocast(backend, amp):
    model = MODELS.build(dict(TINY, backend=backend, drop_path=0.2,
                              attn_drop=0.1, proj_drop=0.1)).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    batch = _batch(_scene(0, 300), _scene(1, 250))
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=amp):
        out, grads = _train_step(model, batch)
    opt.step()
    assert torch.isfinite(out.float()).all()
    for name, p in model.named_parameters():
        assert grads[name].dtype == torch.float32, name
        assert torch.isfinite(grads[name]).all(), name
        assert not torch.equal(p.detach(), before[name]), name


def test_drop_path_drops_whole_rows_in_training_only():
    drop = DropPath(0.5)
    x = torch.ones(1000, 4)
    torch.manual_seed(0)
    y = drop.train()(x)
    kept = (y != 0).all(1)
    assert torch.equal((y == 0).all(1), ~kept)   # whole rows
    assert torch.equal(y[kept], torch.full_like(y[kept], 2.0))
    assert 400 < int(kept.sum()) < 600
    assert torch.equal(drop.eval()(x), x)


# ----------------------------------------------------------------------
# Errors and pretrained weights
# ----------------------------------------------------------------------
def test_bad_config_and_input_one_line_errors():
    with pytest.raises(ValueError, match='enc_channels needs 3 entries'):
        MODELS.build(dict(TINY, enc_channels=(8, 16)))
    with pytest.raises(ValueError, match="order must name .*'peano'"):
        MODELS.build(dict(TINY, order=('z', 'peano')))
    with pytest.raises(ValueError, match='16 channels do not split into 3'):
        MODELS.build(dict(TINY, enc_num_head=(1, 3, 2)))
    with pytest.raises(ValueError, match='stride entries must be powers'):
        MODELS.build(dict(TINY, stride=(2, 3)))
    with pytest.raises(ValueError, match='voxel_size must be > 0'):
        MODELS.build(dict(TINY, voxel_size=0))
    model = MODELS.build(dict(TINY))
    coord, feat, offset = _batch(_scene(0, 100))
    with pytest.raises(ValueError, match='expects 6 feature channels'):
        model(coord, feat[:, :3], offset)
    with pytest.raises(ValueError, match='use a larger voxel_size'):
        model(coord * 1e4, feat, offset)


def test_a_pointcept_checkpoint_loads_through_pretrained(tmp_path):
    """A Pointcept segmentation checkpoint (DefaultSegmentorV2 saved from
    distributed training: ``module.backbone.*``, ``module.seg_head.*``)
    gives its backbone to a PointSegmentor on the same PTv3 settings."""
    from dbbd.engine.pretrained import load_pretrained_backbone
    torch.manual_seed(5)
    theirs = _randomise_norms(MODELS.build(dict(TINY)), 7)
    state = {f'module.backbone.{k}': v
             for k, v in theirs.state_dict().items()}
    state['module.seg_head.weight'] = torch.zeros(20, 8)
    state['module.seg_head.bias'] = torch.zeros(20)
    path = str(tmp_path / 'model_best.pth')
    torch.save(dict(epoch=800, state_dict=state, best_metric_value=0.7),
               path)
    seg = MODELS.build(dict(type='PointSegmentor', backbone=dict(TINY),
                            head=dict(type='LinearSegHead'), num_classes=20))
    n = load_pretrained_backbone(seg.backbone, path, fresh=['head'])
    got = seg.backbone.state_dict()
    assert n == len(got) == len(theirs.state_dict())
    assert all(torch.equal(got[k], v)
               for k, v in theirs.state_dict().items())


def test_pretrained_is_checked_on_the_meta_device_with_drop_path(tmp_path):
    """tools/train.py checks ``pretrained=`` against a model built on the
    meta device before the Runner: a PTv3 with stochastic depth (the
    shipped configs' drop_path > 0) builds there and its weights match."""
    from mmengine.config import Config

    from dbbd.engine.pretrained import check_pretrained_config
    cfg = dict(TINY, drop_path=0.1)
    path = str(tmp_path / 'ptv3.pth')
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in MODELS.build(
        cfg).state_dict().items()}), path)
    model = dict(type='PointSegmentor', backbone=cfg, num_classes=20,
                 head=dict(type='LinearSegHead'), pretrained=path)
    check_pretrained_config(Config(dict(model=model)))
    with torch.device('meta'):
        rates = [m.p for m in MODELS.build(cfg).modules()
                 if isinstance(m, DropPath)]
    assert rates[0] == 0.0 and max(rates) == pytest.approx(0.1)


def test_a_full_checkpoint_probes_encoder_only(tmp_path, capsys):
    """enc_mode leaves the decoder of a full network's file out (and says
    so in the load line); every encoder tensor is loaded."""
    from mmengine.logging import MMLogger

    from dbbd.engine.pretrained import load_pretrained_backbone
    full = MODELS.build(dict(TINY))
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict={
        f'backbone.{k}': v for k, v in full.state_dict().items()}), path)
    MMLogger.get_instance('test_ptv3_probe')   # the current logger
    seg = MODELS.build(dict(type='PointSegmentor',
                            backbone=dict(TINY, enc_mode=True),
                            head=dict(type='LinearSegHead'), num_classes=20))
    n = load_pretrained_backbone(seg.backbone, path, fresh=['head'])
    decoder = [k for k in full.state_dict() if k.startswith('dec.')]
    assert decoder and n == len(full.state_dict()) - len(decoder)
    assert n == len(seg.backbone.state_dict())
    got = seg.backbone.state_dict()
    assert all(torch.equal(got[k], v) for k, v in full.state_dict().items()
               if not k.startswith('dec.'))
    out = capsys.readouterr().out
    assert (f'pretrained: loaded {n} backbone tensors from {path} (training '
            f'checkpoint, epoch 1, encoder only: its {len(decoder)} decoder '
            'tensors left out (enc_mode)); starting fresh: head') in out


def test_docs_example_runs_as_written():
    from doc_snippets import snippet
    code = snippet('ptv3-use')
    scope = {}
    exec(compile(code, 'docs/ptv3.md', 'exec'), scope)
    assert scope['point_feat'].shape == (10000, 32) == (
        10000, scope['backbone'].out_channels)
