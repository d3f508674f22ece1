"""SpUNet, the sparse-convolution scene backbone: small widths, 5 cm voxels,
synthetic rooms of 1,500 points."""
import pytest
import torch

from dbbd.datasets.synthetic import make_room
from dbbd.models.sparse import set_backend, spconv_available
from dbbd.registry import MODELS

SMALL = dict(type='SpUNet', in_channels=6, channels=(16, 32, 64, 64, 32, 32),
             layers=(1, 1, 1, 1, 1, 1), base_channels=16, voxel_size=0.05)


def _scene(seed, n=1500):
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


def _randomise_bn(model, seed):
    """Running statistics and affine parameters away from their identity
    start, so eval mode is not a no-op."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)


def test_registered_with_pointcept_names_and_shapes():
    model = MODELS.build(dict(type='SpUNet', in_channels=6, out_channels=20))
    assert (model.in_channels, model.out_channels, model.num_stages) == \
        (6, 20, 4)
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    # Pointcept SpUNet-v1m1 (spconv 2.x weights are (out, k, k, k, in))
    expected = {
        'conv_input.0.weight': (32, 5, 5, 5, 6),
        'conv_input.1.running_var': (32,),
        'down.0.0.weight': (32, 2, 2, 2, 32),
        'down.3.0.weight': (256, 2, 2, 2, 128),
        'enc.0.block1.conv2.weight': (32, 3, 3, 3, 32),
        'enc.3.block5.bn2.weight': (256,),
        'up.3.0.weight': (256, 2, 2, 2, 256),
        'up.2.0.weight': (128, 2, 2, 2, 256),
        'up.1.0.weight': (96, 2, 2, 2, 128),
        'up.0.0.weight': (96, 2, 2, 2, 96),
        'dec.3.block0.conv1.weight': (256, 3, 3, 3, 384),
        'dec.3.block0.proj.0.weight': (256, 1, 1, 1, 384),
        'dec.2.block0.conv1.weight': (128, 3, 3, 3, 192),
        'dec.1.block0.conv1.weight': (96, 3, 3, 3, 128),
        'dec.0.block1.conv2.weight': (96, 3, 3, 3, 96),
        'final.weight': (20, 1, 1, 1, 96),
        'final.bias': (20,),
    }
    for key, shape in expected.items():
        assert shapes[key] == shape, key
    assert 'enc.0.block0.proj.0.weight' not in shapes   # widths match
    assert sum(p.numel() for p in model.parameters()) == 39_157_844
    assert MODELS.build(dict(SMALL)).out_channels == 32


def test_scene_alone_or_batched_gives_same_features():
    model = MODELS.build(dict(SMALL))
    _randomise_bn(model, 1)
    model.eval()
    a, b = _scene(0), _scene(1, n=1200)
    with torch.no_grad():
        alone = model(*_batch(a))
        first = model(*_batch(a, b))
        second = model(*_batch(b, a))
    assert alone.shape == (1500, 32)
    torch.testing.assert_close(first[:1500], alone, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(second[1200:], alone, rtol=1e-4, atol=1e-5)


def _train_step(model, batch):
    model.zero_grad()
    out = model(*batch)
    out.square().mean().backward()
    return out.detach(), {n: p.grad for n, p in model.named_parameters()}


def test_forward_backward_finite_and_every_parameter_learns():
    model = MODELS.build(dict(SMALL, out_channels=8)).train()
    out, grads = _train_step(model, _batch(_scene(0), _scene(1)))
    assert out.shape == (3000, 8) and torch.isfinite(out).all()
    # every parameter gets a gradient (none is cut off by the maths here)
    for name, grad in grads.items():
        assert grad is not None, name
        assert torch.isfinite(grad).all(), name
        assert grad.abs().sum() > 0, name


@pytest.mark.parametrize('backend', [
    'torch', pytest.param('spconv', marks=pytest.mark.skipif(
        not spconv_available(), reason='spconv is not installed'))])
def test_trains_under_cpu_autocast(backend):
    # torch computes in bfloat16; spconv's CPU kernels in float32
    model = MODELS.build(dict(SMALL, out_channels=8, backend=backend))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out, grads = _train_step(model.train(),
                                 _batch(_scene(0), _scene(1)))
    assert torch.isfinite(out).all()
    for name, grad in grads.items():
        assert grad.dtype == torch.float32 and torch.isfinite(grad).all(), \
            name


@pytest.mark.skipif(not spconv_available(),
                    reason='spconv is not installed (pip install spconv)')
def test_backends_agree_on_spunet():
    # float64: in float32 the batch-norm backward passes amplify rounding
    # to about 1% of some weight gradients, which would hide a real error
    model = MODELS.build(dict(SMALL, out_channels=8)).train().double()
    coord, feat, offset = _batch(_scene(0), _scene(1))
    batch = coord.double(), feat.double(), offset
    out_t, grads_t = _train_step(set_backend(model, 'torch'), batch)
    grads_t = {n: g.clone() for n, g in grads_t.items()}
    out_s, grads_s = _train_step(set_backend(model, 'spconv'), batch)
    torch.testing.assert_close(out_s, out_t, rtol=1e-9, atol=1e-10)
    for name in grads_t:
        torch.testing.assert_close(
            grads_s[name], grads_t[name], rtol=1e-7, atol=1e-10,
            msg=lambda m, n=name: f'{n}: {m}')


def test_bad_config_and_input_one_line_errors():
    with pytest.raises(ValueError, match='even number of channels'):
        MODELS.build(dict(SMALL, layers=(1, 1)))
    model = MODELS.build(dict(SMALL))
    coord, feat, offset = _batch(_scene(0, n=300))
    with pytest.raises(ValueError, match='expects 6 feature channels'):
        model(coord, feat[:, :3], offset)


def test_readme_example_runs_as_written():
    import contextlib
    import io
    import re

    from doc_snippets import snippet
    code = snippet('spunet-example')  # docs/models.md, "SpUNet"
    printed = io.StringIO()
    scope = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, 'docs/models.md', 'exec'), scope)
    # what it prints is what the page's comment says it prints
    (claimed,) = re.findall(r'print\(point_feat.shape\)  # (.*?):', code)
    assert printed.getvalue().strip() == claimed
    backbone, point_feat = scope['backbone'], scope['point_feat']
    coord, offset = scope['coord'], scope['offset']
    assert point_feat.shape == (10000, backbone.out_channels) == (10000, 32)
    # values: after the last ReLU, finite, non-negative, not constant
    assert torch.isfinite(point_feat).all() and (point_feat >= 0).all()
    assert (point_feat > 0).float().mean() > 0.1
    assert point_feat.std(0).min() > 0
    # the points of one 5 cm voxel share their voxel's feature, and the
    # voxels do not all share one
    cell = torch.floor(coord[:5000] / 0.05).long()
    cell = cell - cell.min(0).values
    key = (cell[:, 0] * 1000 + cell[:, 1]) * 1000 + cell[:, 2]
    same = (key == key[0]).nonzero().flatten()
    assert len(same) > 1
    assert torch.equal(point_feat[same], point_feat[same[:1]].expand(
        len(same), -1))
    assert len(torch.unique(point_feat[:5000], dim=0)) > 100
    # the same call again gives the same features (no hidden state)
    with torch.no_grad():
        again = backbone(coord, scope['feat'], offset)
    torch.testing.assert_close(again, point_feat.detach())


def test_decoder_concatenates_up_then_skip_like_pointcept():
    """Every decoder level's first block reads ``cat([up, skip], 1)``:
    Pointcept's order (so its weights' input channels mean the same here),
    the inverse convolution's output first, then the encoder features of
    that resolution, as computed, not zeroed or swapped."""
    model = MODELS.build(dict(SMALL, out_channels=8))
    _randomise_bn(model, 2)
    model.eval()
    seen = {}

    def keep(name):
        def hook(module, args, out):
            seen[name] = out
        return hook

    def keep_input(name):
        def hook(module, args):
            seen[name] = args[0]
        return hook

    model.conv_input.register_forward_hook(keep('enc-1'))
    for s in range(model.num_stages):
        model.enc[s].register_forward_hook(keep(f'enc{s}'))
        model.up[s].register_forward_hook(keep(f'up{s}'))
        model.dec[s].register_forward_pre_hook(keep_input(f'dec{s}'))
    with torch.no_grad():
        model(*_batch(_scene(0), _scene(1, n=1200)))
    for s in range(model.num_stages):
        up, skip, dec_in = seen[f'up{s}'], seen[f'enc{s - 1}'], \
            seen[f'dec{s}']
        # the same voxels, in the same order
        assert torch.equal(up.coords, skip.coords)
        assert torch.equal(dec_in.coords, skip.coords)
        width = up.feat.shape[1]
        assert dec_in.feat.shape[1] == width + skip.feat.shape[1]
        # non-trivial on both sides, so a zeroed or swapped part shows
        assert up.feat.abs().sum() > 0 and skip.feat.abs().sum() > 0
        torch.testing.assert_close(dec_in.feat[:, :width], up.feat,
                                   rtol=0, atol=0)
        torch.testing.assert_close(dec_in.feat[:, width:], skip.feat,
                                   rtol=0, atol=0)


def test_single_voxel_training_batch_is_one_line_naming_the_scene():
    """A training batch whose only scene fits in one voxel (a 4 mm cube at
    5 cm voxels): one line naming the scene and its span, not BatchNorm's
    bare ValueError; eval mode runs."""
    from dbbd.models.backbones.spunet import TooFewVoxelsError
    model = MODELS.build(dict(SMALL)).train()
    tiny = torch.rand(200, 3) * 0.004
    tiny[0], tiny[1] = 0.0, 0.004  # a 4 mm cube
    feat = torch.rand(200, 6)
    offset = torch.tensor([0, 200])
    with pytest.raises(TooFewVoxelsError) as err:
        model(tiny, feat, offset)
    msg = str(err.value)
    assert '\n' not in msg
    assert msg.startswith('SpUNet: scene 0 of the batch (its points span '
                          '0.004 m as the network sees them) fits in one 5 '
                          'cm cell at level 0 of the network (5 cm voxels, '
                          'stride 1)')
    assert err.value.naming(['scene0042_00']).startswith(
        'SpUNet: scene scene0042_00 (its points span 0.004 m as the network '
        'sees them) fits in one')
    # a small scene that is one voxel only at the deepest level
    coord, f, _ = _batch(_scene(0, n=300))
    small = coord * (0.3 / (coord.max(0).values - coord.min(0).values).max())
    with pytest.raises(TooFewVoxelsError, match=r'fits in one 40 cm cell at '
                       r'level 3 .*stride 8\)'):
        model(small, f, torch.tensor([0, 300]))
    # with a second, real scene in the batch it trains
    big, fb, _ = _batch(_scene(1, n=300))
    out = model(torch.cat([tiny, big]), torch.cat([feat, fb]),
                torch.tensor([0, 200, 500]))
    assert torch.isfinite(out).all()
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(tiny, feat, offset)).all()


def test_upcast_readout_is_each_encoder_stage_at_the_points_voxels():
    """readout='upcast': per point, the stem's feature of its voxel and each
    encoder stage's feature of the coarse voxel holding it (grid cell
    ``cell // 2**s``), found here by coordinates, written out."""
    from dbbd.models.sparse import voxelize
    model = MODELS.build(dict(SMALL, readout='upcast')).eval()
    _randomise_bn(model, 2)
    assert model.out_channels == 16 + 16 + 32 + 64
    coord, feat, offset = _batch(_scene(0, n=400), _scene(1, n=300))
    with torch.no_grad():
        out = model(coord, feat, offset)
        voxels, p2v = voxelize(coord, feat, offset, 0.05)
        x = model.conv_input(voxels)
        cell = x.coords[p2v]          # (P, 4): batch, grid x, y, z
        want = [x.feat[p2v]]
        for s in range(model.num_stages):
            x = model.enc[s](model.down[s](x))
            rows = {tuple(c): i for i, c in enumerate(x.coords.tolist())}
            key = torch.cat([cell[:, :1], cell[:, 1:] // 2 ** (s + 1)], 1)
            want.append(x.feat[[rows[tuple(k)] for k in key.tolist()]])
    assert out.shape == (700, model.out_channels)
    torch.testing.assert_close(out, torch.cat(want, 1))


def test_upcast_trains_the_encoder_only_and_loads_into_a_unet():
    model = MODELS.build(dict(SMALL, readout='upcast')).train()
    _, grads = _train_step(model, _batch(_scene(0), _scene(1)))
    decoder = ('up.', 'dec.', 'final.')
    for name, grad in grads.items():
        if name.startswith(decoder):
            assert grad is None, name
        else:
            assert grad is not None and grad.abs().sum() > 0, name
    assert not any(p.requires_grad for n, p in model.named_parameters()
                   if n.startswith(decoder))
    unet = MODELS.build(dict(SMALL))
    unet.load_state_dict(model.state_dict(), strict=True)
    assert all(p.requires_grad for p in unet.parameters())
    with pytest.raises(ValueError, match="readout='upcast' does not"):
        MODELS.build(dict(SMALL, readout='upcast', out_channels=8))
    with pytest.raises(ValueError, match='readout must be one of'):
        MODELS.build(dict(SMALL, readout='encoder'))
