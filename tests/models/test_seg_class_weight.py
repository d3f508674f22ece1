"""PointSegmentor's loss terms and class weights: the default loss is
unchanged, each term is logged, class_weight='auto' reaches the model when
training starts (a real Runner), is logged, saved, restored on resume and
read by a test-time load; older checkpoints without it still load."""
import copy
import logging
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dbbd.utils.config_check import ConfigError
from tiny import build_runner, tiny_seg_cfg

BACKBONE = dict(type='PointNetSceneBackbone', in_channels=3,
                hidden_dims=[8, 16], out_channels=16, global_dims=[16])
TERMS = [dict(type='SegCrossEntropyLoss'), dict(type='LovaszSoftmaxLoss')]


def _model(**kw):
    from dbbd.models.segmentors import PointSegmentor
    torch.manual_seed(0)
    kw.setdefault('num_classes', 4)
    return PointSegmentor(backbone=BACKBONE, head=dict(type='LinearSegHead'),
                          **kw)


def _inputs(n=40, k=4, unlabelled=5):
    g = torch.Generator().manual_seed(1)
    segment = torch.randint(0, k, (n, ), generator=g)
    segment[:unlabelled] = -1
    return dict(view1=dict(coord=torch.randn(n, 3, generator=g),
                           feat=torch.randn(n, 3, generator=g)),
                offset=torch.tensor([0, n // 2, n]), segment=segment)


def test_default_loss_is_the_plain_cross_entropy_as_loss_seg():
    model = _model()
    inputs = _inputs()
    out = model(inputs, mode='loss')
    assert set(out) == {'loss_seg', 'acc_seg'}
    logits = model(inputs, mode='tensor')
    want = F.cross_entropy(logits, inputs['segment'], ignore_index=-1)
    assert out['loss_seg'].item() == pytest.approx(want.item(), rel=1e-5)
    # explicit weights keep working, each point weighted once
    w = [0.5, 1.0, 2.0, 4.0]
    weighted = _model(class_weight=w)(inputs, mode='loss')['loss_seg']
    assert weighted.item() == pytest.approx(F.cross_entropy(
        logits, inputs['segment'], weight=torch.tensor(w),
        ignore_index=-1).item(), rel=1e-5)


def test_each_loss_term_is_logged_and_summed():
    from dbbd.models.losses import lovasz_softmax
    model = _model(losses=[dict(type='SegCrossEntropyLoss', loss_weight=1.0),
                           dict(type='LovaszSoftmaxLoss', loss_weight=0.5)])
    inputs = _inputs()
    out = model(inputs, mode='loss')
    assert set(out) == {'loss_ce', 'loss_lovasz', 'acc_seg'}
    logits = model(inputs, mode='tensor')
    assert out['loss_ce'].item() == pytest.approx(F.cross_entropy(
        logits, inputs['segment'], ignore_index=-1).item(), rel=1e-5)
    assert out['loss_lovasz'].item() == pytest.approx(0.5 * lovasz_softmax(
        F.softmax(logits, 1), inputs['segment']).item(), rel=1e-5)
    total, log_vars = model.parse_losses(out)
    assert total.item() == pytest.approx(
        out['loss_ce'].item() + out['loss_lovasz'].item(), rel=1e-5)
    assert {'loss', 'loss_ce', 'loss_lovasz', 'acc_seg'} <= set(log_vars)
    # a batch without labels: every term 0, not NaN
    empty = dict(inputs, segment=torch.full_like(inputs['segment'], -1))
    assert all(v.item() == 0 for v in model(empty, mode='loss').values())


@pytest.mark.parametrize('kw, message', [
    (dict(class_weight='autox'),
     "PointSegmentor: class_weight must be None, 'auto' or a list of 4 "
     "finite numbers >= 0, not all 0, got 'autox'"),
    (dict(class_weight=[1, 2, 3]),
     'PointSegmentor: class_weight has 3 values for num_classes=4'),
    (dict(class_weight=[1, -1, 1, 1]),
     "PointSegmentor: class_weight must be None, 'auto' or a list"),
    (dict(losses=dict(type='LovaszSoftmaxLoss')),
     'PointSegmentor: losses must be None or a non-empty list'),
    (dict(losses=[dict(type='SegCrossEntropyLoss'),
                  dict(type='SegCrossEntropyLoss')]),
     "PointSegmentor: two loss terms log as 'loss_ce'; give each a "
     'loss_name of its own'),
    (dict(losses=[dict(type='LovaszSoftmaxLoss', ignore_index=255)]),
     "PointSegmentor: losses[0].ignore_index=255 differs from the model's "
     'ignore_index=-1'),
])
def test_bad_class_weight_or_loss_terms_fail_in_one_line(kw, message):
    with pytest.raises(ConfigError) as err:
        _model(**kw)
    assert str(err.value).startswith(message)
    assert '\n' not in str(err.value)


def test_auto_weights_without_counts_stop_the_loss():
    model = _model(class_weight='auto')
    with pytest.raises(ConfigError, match="adds ClassWeightHook"):
        model(_inputs(), mode='loss')
    w = model.set_class_counts([600, 300, 100, 0])
    assert w[3] == 0 and w[:3].mean().item() == pytest.approx(1.0)
    assert torch.equal(model.class_weight, w)
    out = model(_inputs(), mode='loss')
    assert torch.isfinite(out['loss_seg'])
    with pytest.raises(ConfigError, match='got 3 class counts for '
                       'num_classes=4'):
        model.set_class_counts([1, 2, 3])


def test_checkpoints_with_and_without_auto_weights_load_both_ways():
    from dbbd.engine.state_check import check_checkpoint
    auto = _model(class_weight='auto')
    auto.set_class_counts([5, 1, 1, 1])
    state = auto.state_dict()
    assert torch.equal(state['class_weight'], auto.class_weight)
    # an auto checkpoint into a new auto model: restored, ready
    fresh = _model(class_weight='auto')
    assert not fresh.class_weight_ready
    fresh.load_state_dict(state, strict=True)
    assert fresh.class_weight_ready
    assert torch.equal(fresh.class_weight, auto.class_weight)
    # an older checkpoint (no class_weight entry) into an auto model: loads,
    # the weights are counted again when training starts
    plain = _model()
    old = plain.state_dict()
    assert 'class_weight' not in old
    again = _model(class_weight='auto')
    again.load_state_dict(old, strict=True)
    assert not again.class_weight_ready
    # and an auto checkpoint into a model without auto weights
    plain.load_state_dict(state, strict=True)
    # StrictLoadHook's check accepts both (nothing else is optional)
    check_checkpoint(again, dict(state_dict=old), 'old.pth')
    check_checkpoint(plain, dict(state_dict=state), 'auto.pth')
    with pytest.raises(Exception, match='missing'):
        check_checkpoint(again, dict(state_dict={
            k: v for k, v in old.items() if k != 'head.cls.bias'}), 'x.pth')


# ---------------------------------------------------------------------------
# a real Runner: auto weights reach the model, are logged, saved, restored
# ---------------------------------------------------------------------------
class _Lines(logging.Handler):
    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


def _run(cfg):
    runner = build_runner(cfg)
    lines = _Lines()
    runner.logger.addHandler(lines)
    try:
        runner.train()
    finally:
        runner.logger.removeHandler(lines)
    return runner, lines.lines


def _auto_cfg(demo_root, work_dir, **extra):
    from dbbd.engine.hooks.class_weight_hook import add_class_weight_hook
    cfg = tiny_seg_cfg(demo_root, work_dir, 'scratch', **extra)
    cfg.model.class_weight = 'auto'
    cfg.model.losses = copy.deepcopy(TERMS)
    cfg.train_dataloader.dataset.labelled_points = 200
    assert add_class_weight_hook(cfg)
    assert not add_class_weight_hook(cfg)  # once
    return cfg


def test_auto_weights_reach_the_model_and_survive_resume(demo_root,
                                                          tmp_path):
    from dbbd.datasets.scene_io import list_prepared, load_scene
    from dbbd.datasets.seg_dataset import limit_labelled_points
    from dbbd.models.losses import auto_class_weight
    work = tmp_path / 'work'
    cfg = _auto_cfg(demo_root, work)
    runner, lines = _run(cfg)
    # the counts, computed here from the prepared labels
    counts = np.zeros(20, np.int64)
    for d in list_prepared(f'{demo_root}/train'):
        scene = load_scene(d)
        seg = limit_labelled_points(scene['segment'], 200, 0,
                                    scene['scene_id'])
        counts += np.bincount(seg[seg >= 0], minlength=20)
    assert counts.sum() == 800
    want = auto_class_weight(counts)
    model = runner.model
    assert torch.allclose(model.class_weight, want)
    assert len(set(want[counts > 0].tolist())) > 1  # not uniform
    line = [ln for ln in lines if ln.startswith("class_weight='auto'")]
    assert len(line) == 1 and 'from 800 labelled training points' in line[0]
    first = cfg.class_names[int(np.flatnonzero(counts)[0])]
    assert re.search(rf'{first} \d+\.\d{{3}} \(\d+\.\d{{2}}%\)', line[0])
    # each term logged (the sum too)
    hub = runner.message_hub
    for key in ('train/loss', 'train/loss_ce', 'train/loss_lovasz'):
        assert np.isfinite(hub.get_scalar(key).current()), key
    # saved with the checkpoint
    ckpt = torch.load(work / 'epoch_1.pth', map_location='cpu',
                      weights_only=False)
    assert torch.allclose(ckpt['state_dict']['class_weight'], want)

    # resumed (on other training labels: the checkpoint's weights win)
    cfg2 = _auto_cfg(demo_root, work, max_epochs=2, resume=True)
    cfg2.train_dataloader.dataset.labelled_points = 50
    runner2, lines2 = _run(cfg2)
    assert torch.allclose(runner2.model.class_weight, want)
    assert any(ln.startswith("class_weight='auto' (restored from the "
                             'checkpoint)') for ln in lines2)
    # a test-time load (tools/test.py: load_from, no training) reads them
    cfg3 = _auto_cfg(demo_root, tmp_path / 'test',
                     load_from=str(work / 'epoch_2.pth'))
    runner3 = build_runner(cfg3)
    runner3.test()
    assert runner3.model.class_weight_ready
    assert torch.allclose(runner3.model.class_weight, want)
