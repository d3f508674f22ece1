"""The DBBD model: modes, batch shapes at the edges, building, one step."""
import textwrap

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import OptimWrapper

from dbbd.registry import MODELS

from model_helpers import make_batch, small_cfg


def _grads_everywhere(model):
    missing = [n for n, p in model.named_parameters()
               if p.requires_grad and (p.grad is None or not p.grad.any())]
    assert not missing, f'no gradient reached {missing}'


def _step(model, batch):
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    total, log_vars = model.parse_losses(losses)
    assert torch.isfinite(total)
    return total, losses, log_vars


@pytest.mark.parametrize('mode', ['max', 'mean', 'attention'])
def test_loss_mode_reaches_every_parameter(mode):
    model = MODELS.build(small_cfg(aggregator=dict(
        type='Aggregator', mode=mode, pre_mlp=True)))
    batch = make_batch(dict(n=700, max_depth=2), dict(n=500, max_depth=3))
    total, losses, log_vars = _step(model, batch)
    assert {'loss_region', 'loss_point', 'region_l0', 'region_l1',
            'region_l2', 'region_l3'} == set(losses)  # one name each
    torch.testing.assert_close(
        log_vars['loss'], losses['loss_region'] + losses['loss_point'])
    total.backward()
    _grads_everywhere(model)


def test_train_step_with_mmengine_optim_wrapper():
    model = MODELS.build(small_cfg())
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    batch = make_batch(dict(n=500), dict(n=400))
    before = [p.detach().clone() for p in model.parameters()]
    log_vars = model.train_step(batch, wrapper)
    assert torch.isfinite(log_vars['loss'])
    assert all(not torch.equal(a, b)
               for a, b in zip(before, model.parameters()))
    # validation path: loss parts come back with the predictions
    out = model.val_step(batch)
    assert len(out) == 2 and 'loss' in out[0]['losses']


def test_predict_returns_one_dict_per_scene_with_losses():
    model = MODELS.build(small_cfg())
    batch = make_batch(dict(n=500), dict(n=300, max_depth=1))
    data = model.data_preprocessor(batch)
    with torch.no_grad():
        out = model(**data, mode='predict')
        losses = model(**data, mode='loss')
    assert [o['scene_id'] for o in out] == ['scene0', 'scene1']
    for o, n, lo, hi in zip(out, (500, 300), (0, 500), (500, 800)):
        assert o['point_feat'].shape == (n, 16)
        assert o['point_feat_l2g'].shape == (n, 16)
        assert torch.equal(o['segment'], batch['inputs']['segment'][lo:hi])
    total, _ = model.parse_losses(losses)
    torch.testing.assert_close(out[0]['losses']['loss'], total)
    torch.testing.assert_close(out[1]['losses']['loss_region'],
                               losses['loss_region'])


def test_tensor_mode_needs_only_view1():
    model = MODELS.build(small_cfg())
    batch = make_batch(dict(n=500), dict(n=300, max_depth=3))
    del batch['inputs']['view2']
    data = model.data_preprocessor(batch)
    out = model(**data, mode='tensor')
    assert out['point_feat'].shape == (800, 16)
    sizes = [int(r[-1]) for r in batch['inputs']['region_offset']]
    assert [f.shape for f in out['region_feat']] == [(s, 16) for s in sizes]
    assert torch.equal(out['offset'], batch['inputs']['offset'])
    preds = model(**data, mode='predict')
    assert 'losses' not in preds[0] and 'point_feat_l2g' not in preds[0]
    with pytest.raises(KeyError, match='view2'):
        model(**data, mode='loss')
    with pytest.raises(ValueError, match='mode'):
        model(**data, mode='features')


def test_empty_level_changes_nothing():
    model = MODELS.build(small_cfg())
    batch = make_batch(dict(n=400), dict(n=300))
    base, _, _ = _step(model, batch)
    inp = batch['inputs']
    p = inp['point_region'].shape[1]
    inp['point_region'] = torch.cat(
        [inp['point_region'], torch.full((1, p), -1)])
    inp['region_parent'] = inp['region_parent'] + [torch.zeros(0).long()]
    inp['region_center'] = inp['region_center'] + [torch.zeros(0).long()]
    inp['region_offset'] = torch.cat(
        [inp['region_offset'], torch.zeros(1, 3).long()])
    del inp['tree']  # derived again from the arrays
    total, losses, _ = _step(model, batch)
    torch.testing.assert_close(total, base)
    out = model(**model.data_preprocessor(batch), mode='tensor')
    assert out['region_feat'][-1].shape == (0, 16)


@pytest.mark.parametrize('scenes', [
    (dict(n=300, max_depth=0), ),                       # one region, alone
    (dict(n=300, max_depth=2), ),                       # batch size 1
    (dict(n=200, max_depth=0), dict(n=400, max_depth=2)),  # single + deep
])
def test_single_region_scene_and_batch_of_one(scenes):
    model = MODELS.build(small_cfg())
    total, losses, _ = _step(model, make_batch(*scenes))
    total.backward()
    if len(scenes) == 1 and scenes[0]['max_depth'] == 0:
        assert losses['loss_region'].item() == 0.0 and \
            'region_l0' not in losses
    else:
        assert losses['loss_region'].item() > 0
    enc = [p.grad for p in model.backbone.encoder.parameters()]
    assert all(g is not None and g.any() for g in enc)


def test_gradient_checkpointing_gives_the_same_loss_and_grads():
    batch = make_batch(dict(n=400, max_depth=2), dict(n=300, max_depth=3))
    torch.manual_seed(0)
    plain = MODELS.build(small_cfg())
    torch.manual_seed(0)
    cp = MODELS.build(small_cfg(with_cp=True))
    a, _, _ = _step(plain, batch)
    b, _, _ = _step(cp, batch)
    a.backward()
    b.backward()
    torch.testing.assert_close(a, b)
    for p, q in zip(plain.parameters(), cp.parameters()):
        torch.testing.assert_close(p.grad, q.grad)


def test_dims_are_filled_in_and_checked():
    cfg = small_cfg()
    model = MODELS.build(cfg)
    assert model.backbone.propagator.in_channels == 16
    assert model.region_head.in_channels == 16
    bad = small_cfg(encoder=dict(type='PointNetEncoder', in_channels=8,
                                 out_channels=16))
    with pytest.raises(ValueError, match='encoder.in_channels'):
        MODELS.build(bad)
    bad = small_cfg()
    bad['backbone']['aggregator'] = dict(type='Aggregator', channels=32)
    with pytest.raises(ValueError, match='aggregator.channels'):
        MODELS.build(bad)


def test_data_preprocessor_keeps_samples_and_moves_tensors():
    model = MODELS.build(small_cfg())
    batch = make_batch(dict(n=200))
    data = model.data_preprocessor(batch)
    assert data['data_samples'] == batch['data_samples']
    assert data['inputs']['region_parent'][1].device == torch.device('cpu')
    with pytest.raises(KeyError, match='inputs'):
        model.data_preprocessor(dict(view1=None))


def test_encoder_from_outside_the_package_via_custom_imports(tmp_path,
                                                             monkeypatch):
    (tmp_path / 'dbbd_test_toy_encoder.py').write_text(textwrap.dedent('''
        import torch
        from torch import nn

        from dbbd.models.utils import segment_mean
        from dbbd.registry import MODELS


        @MODELS.register_module()
        class ToyTestEncoder(nn.Module):
            def __init__(self, in_channels, out_channels=8):
                super().__init__()
                self.in_channels = in_channels
                self.out_channels = out_channels
                self.fc = nn.Linear(in_channels + 3, out_channels)

            def forward(self, feat, coord, region, num_regions):
                h = torch.relu(self.fc(torch.cat([feat, coord], 1)))
                return h, segment_mean(h, region, num_regions)
        '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg_path = tmp_path / 'toy_cfg.py'
    model_cfg = small_cfg(width=12, encoder=dict(type='ToyTestEncoder',
                                                 out_channels=8))
    cfg_path.write_text(
        "custom_imports = dict(imports=['dbbd_test_toy_encoder'], "
        "allow_failed_imports=False)\n"
        f'model = {model_cfg!r}\n')
    cfg = Config.fromfile(str(cfg_path))
    model = MODELS.build(cfg.model)
    assert type(model.backbone.encoder).__name__ == 'ToyTestEncoder'
    assert model.out_channels == 8 and model.point_head.in_channels == 8
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    total, _, _ = _step(model, make_batch(dict(n=300), dict(n=200)))
    total.backward()
    _grads_everywhere(model)
    before = model.backbone.encoder.fc.weight.detach().clone()
    opt.step()
    assert not torch.equal(before, model.backbone.encoder.fc.weight)


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_matches_cpu():
    batch = make_batch(dict(n=800, max_depth=2), dict(n=600, max_depth=3))
    for agg in ('max', 'attention'):
        model = MODELS.build(small_cfg(aggregator=dict(type='Aggregator',
                                                       mode=agg)))
        cpu, cpu_parts, _ = _step(model, batch)
        cpu.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        model.zero_grad()
        model.cuda()
        gpu, gpu_parts, _ = _step(model, batch)
        assert gpu.device.type == 'cuda'
        gpu.backward()
        torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
        for k in cpu_parts:
            torch.testing.assert_close(gpu_parts[k].cpu(), cpu_parts[k],
                                       atol=1e-4, rtol=1e-4)
        for g, p in zip(grads, model.parameters()):
            torch.testing.assert_close(p.grad.cpu(), g, atol=1e-3,
                                       rtol=1e-3)
        feats = model(**model.data_preprocessor(batch), mode='tensor')
        assert feats['point_feat'].is_cuda


def test_autocast_bf16_on_cpu():
    """The AMP path (autocast) runs through the same code as on a GPU."""
    model = MODELS.build(small_cfg(aggregator=dict(type='Aggregator',
                                                   mode='attention')))
    data = model.data_preprocessor(make_batch(dict(n=400), dict(n=300)))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    _grads_everywhere(model)


def test_tree_backbone_alone_equals_what_dbbd_computes():
    """The backbone built by itself from the config (the same weights)
    gives DBBD's G2L and L2G readings and its per-point features."""
    from mmengine.config import Config

    from dbbd.models.utils import tree_index_of
    from tiny import SMALL, TINY_MODEL
    cfg = Config.fromfile(SMALL)
    cfg.merge_from_dict(dict(model=TINY_MODEL))
    model = MODELS.build(cfg.model).eval()
    backbone = MODELS.build(cfg.model.backbone).eval()
    assert type(backbone).__name__ == 'DBBDTreeBackbone'
    backbone.load_state_dict(model.backbone.state_dict())
    batch = make_batch(dict(n=500, max_depth=2), dict(n=300, max_depth=1),
                       in_channels=3)
    inputs = model.data_preprocessor(batch)['inputs']
    tree = tree_index_of(inputs)
    with torch.no_grad():
        g2l = backbone.g2l(inputs['view1'], tree)
        l2g = backbone.l2g(inputs['view2'], tree)
        point = backbone(inputs)
        want = model(inputs, mode='tensor')
        preds = model(inputs, mode='predict')
        losses = model(inputs, mode='loss')
        # the loss of the backbone's readings through DBBD's heads
        from_parts = model._losses(g2l, l2g, inputs['sample_order'])
    assert torch.equal(point, want['point_feat'])
    assert torch.equal(g2l['point_feat'], want['point_feat'])
    for a, b in zip(g2l['region_feat'], want['region_feat']):
        assert torch.equal(a, b)
    assert torch.equal(torch.cat([p['point_feat_l2g'] for p in preds]),
                       l2g['point_feat'])
    assert len(l2g['region_feat']) == tree.num_levels
    for key in losses:
        assert torch.equal(losses[key], from_parts[key]), key


def test_dbbd_on_spunet_step_reaches_every_parameter():
    cfg = small_cfg()
    cfg['backbone'].update(encoder=None, scene_backbone=dict(
        type='SpUNet', base_channels=8, channels=[8, 16, 16, 12],
        layers=[1, 1, 1, 1], voxel_size=0.3))
    model = MODELS.build(cfg)
    total, losses, _ = _step(model, make_batch(dict(n=700, max_depth=2),
                                               dict(n=500, max_depth=3)))
    total.backward()
    _grads_everywhere(model)
    assert any(n.startswith('backbone.scene_backbone.') for n, _ in
               model.named_parameters())


# -- the EMA teacher (ema_momentum) --------------------------------------------


def _ema_model(m=0.9):
    return MODELS.build(dict(small_cfg(), ema_momentum=m))


def test_ema_teacher_reads_view2_and_follows_the_student():
    torch.manual_seed(0)
    model = _ema_model(0.9).train()
    batch = make_batch(dict(n=500), dict(n=400))
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    pairs = [(model.teacher_backbone, model.backbone),
             (model.teacher_region_head, model.region_head),
             (model.teacher_point_head, model.point_head)]

    def params(i):
        return [p.detach().clone() for t_s in pairs
                for p in t_s[i].parameters()]
    # the first training step copies the student, then trains the student
    model.train_step(batch, wrapper)
    assert int(model.teacher_step) == 1
    teacher, student = params(0), params(1)
    assert any(not torch.equal(t, s) for t, s in zip(teacher, student))
    # the second: teacher = 0.9 teacher + 0.1 student (before the step)
    model.train_step(batch, wrapper)
    for t, t0, s0 in zip(params(0), teacher, student):
        torch.testing.assert_close(t, 0.9 * t0 + 0.1 * s0)
    # no gradient reaches the teacher; the loss is the student's G2L
    # against the teacher's L2G
    assert all(p.grad is None for t_s in pairs for p in t_s[0].parameters())
    data = model.data_preprocessor(batch, True)
    with torch.no_grad():
        model(**data, mode='loss')  # no update without gradients
        model.eval()
        losses = model(**data, mode='loss')
        out = model(**data, mode='predict')
    assert int(model.teacher_step) == 2
    total, _ = model.parse_losses(losses)
    torch.testing.assert_close(out[0]['losses']['loss'], total)
    tree = data['inputs']['tree']
    with torch.no_grad():
        want = model.teacher_backbone.l2g(data['inputs']['view2'],
                                          tree)['point_feat']
        student_l2g = model.backbone.l2g(data['inputs']['view2'],
                                         tree)['point_feat']
    got = torch.cat([o['point_feat_l2g'] for o in out])
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, student_l2g)
    assert torch.isfinite(losses['loss_point'])


def test_ema_teacher_step_is_restored_and_not_exported():
    from dbbd.engine.export import encoder_state_dict
    model = _ema_model()
    for _ in range(3):
        model.update_teacher()
    other = _ema_model()
    other.load_state_dict(model.state_dict())
    assert other._step == 3 and int(other.teacher_step) == 3
    # the encoder is the student's backbone, key for key
    enc = encoder_state_dict(model)
    assert set(enc) == set(model.backbone.state_dict())
    # a plain DBBD has no teacher
    plain = MODELS.build(small_cfg())
    assert not any(k.startswith('teacher') for k in plain.state_dict())


@pytest.mark.parametrize('m', [1.0, -0.1, True, '0.9'])
def test_ema_momentum_out_of_range_is_one_line(m):
    from dbbd.utils.config_check import ConfigError
    with pytest.raises(ConfigError, match='ema_momentum') as err:
        _ema_model(m)
    assert '\n' not in str(err.value)
