"""SelfDistill: Sinkhorn-Knopp centring, the EMA teacher, masking on the
student only, no gradient into the teacher, the loss over matched points.
"""
import math

import numpy as np
import pytest
import torch
from mmengine.dataset import Compose
from mmengine.optim import OptimWrapper

from dbbd.datasets import dbbd_collate
from dbbd.models.losses import sinkhorn_knopp
from dbbd.registry import MODELS, TRANSFORMS

# -- Sinkhorn-Knopp -----------------------------------------------------------


def test_sinkhorn_balances_samples_that_all_prefer_one_prototype():
    """Four samples that all score prototype 0 higher: the softmax gives
    each ~0.88 / 0.12; the balanced assignment must give the two
    prototypes the same share, and the samples being alike, 1/2 each."""
    scores = torch.tensor([[1.0, 0.0]] * 4)
    assert torch.softmax(scores / 0.5, 1)[0, 0] > 0.88
    q = sinkhorn_knopp(scores, temperature=0.5, num_iters=3)
    torch.testing.assert_close(q, torch.full((4, 2), 0.5))


def test_sinkhorn_one_iteration_by_hand():
    """exp(scores) = [[1, 1, 2], [1, 3, 1]], one iteration, worked by hand:
    total 9; columns scaled to 1/3 each -> [[1/6, 1/12, 2/9], [1/6, 1/4,
    1/9]]; rows (17/36 and 19/36) scaled to 1."""
    scores = torch.log(torch.tensor([[1.0, 1.0, 2.0], [1.0, 3.0, 1.0]]))
    q = sinkhorn_knopp(scores, num_iters=1)
    want = torch.tensor([[6 / 17, 3 / 17, 8 / 17], [6 / 19, 9 / 19, 4 / 19]])
    torch.testing.assert_close(q, want)


def test_sinkhorn_converges_to_the_doubly_stochastic_scaling():
    """A 2 x 2 positive matrix [[a, b], [c, d]] scales to [[p, 1 - p],
    [1 - p, p]] with p / (1 - p) = sqrt(ad / bc) (the cross ratio is kept
    by row and column scalings)."""
    a, b, c, d = 4.0, 1.0, 1.0, 1.0
    q = sinkhorn_knopp(torch.log(torch.tensor([[a, b], [c, d]])),
                       num_iters=200)
    p = math.sqrt(a * d) / (math.sqrt(a * d) + math.sqrt(b * c))
    torch.testing.assert_close(q, torch.tensor([[p, 1 - p], [1 - p, p]]))


def test_sinkhorn_weight_zero_samples_and_groups_are_independent():
    gen = torch.Generator().manual_seed(0)
    scores = torch.randn(2, 5, 4, generator=gen)
    weight = torch.tensor([[1, 1, 1, 0, 1], [1, 1, 1, 1, 1]])
    q = sinkhorn_knopp(scores, weight, temperature=0.1)
    # the weight-0 sample gets nothing and changes nothing
    assert torch.equal(q[0, 3], torch.zeros(4))
    keep = [0, 1, 2, 4]
    torch.testing.assert_close(
        q[0, keep], sinkhorn_knopp(scores[0, keep], temperature=0.1))
    # each group is balanced on its own
    torch.testing.assert_close(q[1], sinkhorn_knopp(scores[1],
                                                    temperature=0.1))
    torch.testing.assert_close(q.sum(-1), weight.float())


# -- a tiny model and batch ---------------------------------------------------

SPUNET = dict(type='SpUNet', base_channels=8, channels=[8, 16, 16, 16],
              layers=[1, 1, 1, 1], voxel_size=0.3, readout='upcast')
POINTNET = dict(type='PointNetSceneBackbone', hidden_dims=[8, 16],
                out_channels=16)


def _cfg(backbone=POINTNET, **kwargs):
    cfg = dict(type='SelfDistill', in_channels=6, backbone=dict(backbone),
               head=dict(type='PrototypeHead', hidden_channels=16,
                         bottleneck_channels=8, num_prototypes=16),
               num_samples=4096, momentum=0.9, final_momentum=1.0,
               momentum_iters=10)
    cfg.update(kwargs)
    return cfg


def _scene(n, seed):
    rng = np.random.default_rng(seed)
    return dict(scene_id=f's{seed}',
                coord=(rng.random((n, 3)) * [4.0, 3.0, 2.0]).astype(
                    np.float32),
                color=(rng.random((n, 3)) * 255).astype(np.float32),
                normal=rng.normal(size=(n, 3)).astype(np.float32),
                intensity=None, segment=rng.integers(-1, 5, n),
                seed_key=(0, 0, seed), sample_seed=seed)


def _batch(num_local=1, mask=True, sizes=(300, 200)):
    """Collated crops: 2 global views (masked when ``mask``), then
    ``num_local`` local ones."""
    masking = [dict(type='RandomPatchMask', ratio=0.4, patch_size=0.5)] \
        if mask else []
    pipeline = Compose([TRANSFORMS.build(t) for t in [
        dict(type='MultiCrop', groups=[
            dict(num_views=2, transforms=[
                dict(type='RandomPointCrop', ratio=(0.5, 0.9)),
                dict(type='CenterShift'), dict(type='RandomRotateZ'),
                dict(type='NormalizeColor')] + masking),
            dict(num_views=num_local, transforms=[
                dict(type='RandomPointCrop', ratio=(0.2, 0.4)),
                dict(type='CenterShift'), dict(type='NormalizeColor')]),
        ]),
        dict(type='PackDBBDInputs', feat_keys=('color', 'normal')),
    ]])
    return dbbd_collate([pipeline(_scene(n, i)) for i, n in
                         enumerate(sizes)])


def _inputs(model, batch):
    return model.data_preprocessor(batch, True)['inputs']


# -- the EMA teacher ----------------------------------------------------------


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def test_ema_update_by_hand():
    torch.manual_seed(0)
    model = MODELS.build(_cfg(momentum_iters=3))
    teacher = list(model.teacher_backbone.parameters()) + list(
        model.teacher_head.parameters())
    student = list(model.backbone.parameters()) + list(
        model.student_head.parameters())
    with torch.no_grad():  # a teacher unlike the student
        for t in teacher:
            t.normal_()
    # update 0 copies the student
    assert model.update_teacher() == 0.0
    for t, s in zip(teacher, student):
        assert torch.equal(t, s)
    for step in (1, 2, 3, 4):
        with torch.no_grad():  # an optimizer step moved the student
            for s in student:
                s.add_(torch.randn_like(s))
        before_t = [t.detach().clone() for t in teacher]
        before_s = [s.detach().clone() for s in student]
        # written out: cosine from 0.9 (t = 0) to 1.0 (t >= 1), t = step / 3
        frac = min(step / 3, 1.0)
        m = 1.0 - (1.0 - 0.9) * (1 + math.cos(math.pi * frac)) / 2
        assert model.update_teacher() == pytest.approx(m)
        for t, t0, s0 in zip(teacher, before_t, before_s):
            torch.testing.assert_close(t, m * t0 + (1 - m) * s0)
    assert m == 1.0  # at the end of the horizon the teacher stays
    assert int(model.teacher_step) == model._step == 5


def test_training_forward_updates_the_teacher_and_nothing_else_does():
    model = MODELS.build(_cfg())
    batch = _batch()
    inputs = _inputs(model, batch)
    model.train()
    model(inputs, mode='loss')
    assert int(model.teacher_step) == 1
    with torch.no_grad():  # PreciseBNHook's statistics passes
        model(inputs, mode='loss')
    model.eval()
    model(inputs, mode='predict')
    model(inputs, mode='loss')
    assert int(model.teacher_step) == 1
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    model.train()
    model.train_step(batch, wrapper)
    assert int(model.teacher_step) == 2


def test_teacher_step_is_restored_with_the_state_dict():
    model = MODELS.build(_cfg())
    for _ in range(3):
        model.update_teacher()
    other = MODELS.build(_cfg())
    other.load_state_dict(model.state_dict())
    assert other._step == 3
    assert other.momentum_at(other._step) == model.momentum_at(3)


# -- no gradient into the teacher, masking on the student only ----------------


@pytest.mark.parametrize('backbone', [POINTNET, SPUNET])
def test_teacher_gets_no_gradient_and_the_student_learns(backbone):
    torch.manual_seed(0)
    model = MODELS.build(_cfg(backbone)).train()
    inputs = _inputs(model, _batch())
    losses = model(inputs, mode='loss')
    assert set(losses) == {'loss_distill', 'teacher_momentum',
                           'teacher_temp'}
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    for name, p in model.named_parameters():
        if name.startswith(('teacher_backbone.', 'teacher_head.')):
            assert not p.requires_grad and p.grad is None, name
        elif p.requires_grad:  # the up-cast SpUNet's decoder is frozen
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert model.mask_token.token.grad.abs().sum() > 0


def test_masking_reaches_the_student_only():
    """The student reads masked points as the token, the teacher reads
    every point's own features."""
    model = MODELS.build(_cfg())
    batch = _batch()
    inputs = _inputs(model, batch)
    seen = {}

    def spy(name, module):
        forward = module.forward

        def wrapped(coord, feat, offset):
            seen[name] = feat.detach().clone()
            return forward(coord, feat, offset)
        module.forward = wrapped

    spy('student', model.backbone)
    spy('teacher', model.teacher_backbone)
    model.train()
    model(inputs, mode='loss')
    views = [inputs[f'view{v}'] for v in (1, 2, 3)]
    raw = torch.cat([v['feat'] for v in views])
    mask = torch.cat([v.get('mask', torch.zeros(v['feat'].shape[0],
                                                dtype=torch.bool))
                      for v in views])
    assert mask.any() and not mask.all()
    token = model.mask_token.token.detach()
    student, teacher = seen['student'], seen['teacher']
    assert torch.equal(student[mask], token.expand(int(mask.sum()), -1))
    assert torch.equal(student[~mask], raw[~mask])
    # the teacher: the two global views, unmasked
    n_global = views[0]['feat'].shape[0] + views[1]['feat'].shape[0]
    assert torch.equal(teacher, raw[:n_global])


# -- the loss over matched points ---------------------------------------------


def test_loss_equals_a_direct_computation_over_matched_points():
    """With num_samples above the batch's points every shared point is
    used; written out per pair: the scene points both views hold (by
    index), the teacher's scores on them, centred by Sinkhorn-Knopp, and
    the student's cross-entropy, averaged over the points, then the
    pairs. The pairs: each view against each other global view, and a
    masked global view against its own unmasked copy on its masked points.
    """
    torch.manual_seed(0)
    model = MODELS.build(_cfg()).double().eval()
    inputs = _inputs(model, _batch(num_local=2))
    views = [inputs[f'view{v}'] for v in range(1, 5)]
    for v in views:
        v['coord'], v['feat'] = v['coord'].double(), v['feat'].double()
    loss = model(inputs, mode='loss')['loss_distill']

    def run(backbone, v, masked):
        view = model.mask_token(v) if masked else v
        return backbone(view['coord'], view['feat'], view['offset'])

    parts = []
    for t in (0, 1):
        ft = run(model.teacher_backbone, views[t], False)
        for s in range(4):
            fs = run(model.backbone, views[s], True)
            rows_t = {int(p): i for i, p in enumerate(views[t]['index'])}
            rows_s = {int(p): i for i, p in enumerate(views[s]['index'])}
            if s == t:
                shared = [p for p, i in rows_s.items()
                          if views[s]['mask'][i]]
            else:
                shared = sorted(set(rows_t) & set(rows_s))
            if not shared:
                continue
            _, t_scores = model.teacher_head(ft[[rows_t[p] for p in shared]])
            _, s_scores = model.student_head(fs[[rows_s[p] for p in shared]])
            q = sinkhorn_knopp(t_scores, temperature=0.07)
            logp = torch.log_softmax(s_scores.float() / 0.1, 1)
            parts.append(-(q * logp).sum(1).mean())
    assert len(parts) == 8  # 4 x 2, the same-view pairs included
    torch.testing.assert_close(loss, torch.stack(parts).mean().float())


def test_sampled_points_are_the_first_shared_ones_in_sample_order():
    model = MODELS.build(_cfg(num_samples=40))
    inputs = _inputs(model, _batch(num_local=1, mask=False))
    views = [inputs[f'view{v}'] for v in (1, 2, 3)]
    pairs, s_rows, t_rows, weight = model._sample_pairs(inputs, views)
    # no masks: no same-view pair
    assert pairs == [(1, 0), (2, 0), (0, 1), (2, 1)]
    order = inputs['sample_order'].tolist()
    start = [0, views[0]['coord'].shape[0],
             views[0]['coord'].shape[0] + views[1]['coord'].shape[0]]
    for g, (s, t) in enumerate(pairs):
        held_s = set(views[s]['index'].tolist())
        held_t = set(views[t]['index'].tolist())
        want = [p for p in order if p in held_s and p in held_t][:40]
        assert int(weight[g].sum()) == len(want)
        got_s = views[s]['index'][s_rows[g][weight[g]] - start[s]]
        got_t = views[t]['index'][t_rows[g][weight[g]] - start[t]]
        assert got_s.tolist() == want and got_t.tolist() == want


def test_predict_and_errors():
    model = MODELS.build(_cfg(return_embeddings=True)).eval()
    batch = _batch()
    inputs = _inputs(model, batch)
    with torch.no_grad():
        out = model(inputs, batch['data_samples'], mode='predict')
    n1 = inputs['view1']['offset'].diff().tolist()
    assert [o['point_feat'].shape[0] for o in out] == n1
    assert torch.equal(torch.cat([o['segment'] for o in out]),
                       inputs['segment'][inputs['view1']['index']])
    assert set(out[0]['losses']) == {'loss', 'loss_distill'}
    s, t = out[0]['embeddings']['point']
    assert s.shape == t.shape and s.shape[1] == 8
    with pytest.raises(KeyError, match='needs at least 2'):
        model({'view1': inputs['view1'], **{
            k: v for k, v in inputs.items() if not k.startswith('view')}},
              mode='loss')
    with pytest.raises(ValueError, match='mask_token=True'):
        MODELS.build(_cfg(mask_token=False))(inputs, mode='loss')
    with pytest.raises(ValueError, match='momentum must be a number'):
        MODELS.build(_cfg(momentum=1.5))


def test_a_self_distill_checkpoint_is_named_pretraining_with_its_configs():
    """tools/test.py's check: a SelfDistill state dict is a pre-training
    one (its student head is no segmentation ``head.``), and the seg
    configs whose SpUNet has its weights are found although it was read
    encoder-only (``readout`` is not compared)."""
    import os.path as osp

    from mmengine.config import Config

    from dbbd.engine.pretrained import checkpoint_kind, seg_configs_for
    state = MODELS.build(_cfg()).state_dict()
    assert checkpoint_kind(dict(state_dict=state)) == 'pretraining'
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    cfg = Config.fromfile(osp.join(repo, 'configs', 'self_distill',
                                   'self_distill_spunet_small_demo.py'))
    backbone = dict(cfg.model.backbone, in_channels=3)
    assert backbone['readout'] == 'upcast'
    found = [osp.basename(p) for p in seg_configs_for(
        backbone, osp.join(repo, 'configs', 'dbbd'), 'seg_spunet_*_ft.py')]
    assert 'seg_spunet_small_demo_ft.py' in found
