"""PreciseBNHook: BatchNorm statistics recomputed from training batches, so
that eval-mode features (validation, the frozen linear probe) are those of
training."""
import os.path as osp
import uuid

import pytest
import torch

from tiny import build_runner

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SEG_SPUNET = osp.join(REPO, 'configs', 'dbbd', 'seg_spunet_small_demo_{}.py')


def _spunet_seg_runner(demo_root, work_dir, protocol='scratch'):
    from mmengine.config import Config

    from dbbd.models.segmentors.config import apply_top_level
    cfg = Config.fromfile(SEG_SPUNET.format(protocol))
    cfg.merge_from_dict(dict(
        data_root=demo_root, pretrained=None,
        work_dir=str(work_dir),
        experiment_name=f'test_{uuid.uuid4().hex[:8]}',
        train_cfg=dict(max_epochs=1, val_interval=1),
        default_hooks=dict(checkpoint=dict(interval=1),
                           logger=dict(interval=1)),
        model=dict(backbone=dict(base_channels=8, channels=(8, 16, 16, 8),
                                 layers=(1, 1, 1, 1), voxel_size=0.1))))
    cfg.train_dataloader.dataset.data_root = demo_root
    cfg.val_dataloader.dataset.data_root = demo_root
    cfg.test_dataloader = cfg.val_dataloader
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.dataset.pop('auto_prepare', None)
    apply_top_level(cfg)
    return build_runner(cfg)


def _eval_vs_train(model, batch):
    """Relative difference of the backbone's eval-mode and train-mode
    features on one training batch (train mode without touching the
    running statistics)."""
    data = model.data_preprocessor(batch, True)
    inputs = data['inputs']
    args = (inputs['view1']['coord'], inputs['view1']['feat'],
            inputs['offset'])
    bns = [m for m in model.modules()
           if isinstance(m, torch.nn.BatchNorm1d)]
    with torch.no_grad():
        model.eval()
        eval_out = model.backbone(*args)
        model.train()
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            bn.momentum = 0.0  # batch statistics, running ones unchanged
        train_out = model.backbone(*args)
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
    return float((eval_out - train_out).norm() / train_out.norm())


def test_recomputed_statistics_make_eval_features_those_of_training(
        demo_root, tmp_path):
    from dbbd.engine.hooks import PreciseBNHook
    runner = _spunet_seg_runner(demo_root, tmp_path)
    model = runner.model
    batch = next(iter(runner.train_dataloader))
    model.train()
    with torch.no_grad():  # a few steps' worth of momentum-0.01 updates
        for _ in range(8):
            model._run_forward(model.data_preprocessor(batch, True),
                               mode='loss')
    stale = _eval_vs_train(model, batch)
    weights = {k: v.clone() for k, v in model.state_dict().items()
               if 'running' not in k and 'num_batches' not in k}
    model.train()
    assert PreciseBNHook.recompute(model, runner.train_dataloader, 16) == \
        len(runner.train_dataloader)
    fresh = _eval_vs_train(model, batch)
    assert stale > 0.5, stale  # the fault the hook is for
    assert fresh < 0.4, (stale, fresh)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in weights.items())
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert all(bn.momentum == 0.01 for bn in bns)  # restored


def test_frozen_backbone_keeps_its_statistics(demo_root, tmp_path):
    from dbbd.engine.hooks import PreciseBNHook
    runner = _spunet_seg_runner(demo_root, tmp_path, 'lin')
    model = runner.model
    model.train()
    assert not model.backbone.training
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert PreciseBNHook.recompute(model, runner.train_dataloader, 16) == 0
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_checkpoint_of_an_epoch_holds_the_recomputed_statistics(
        demo_root, tmp_path):
    from dbbd.engine.checkpoint import load_checkpoint_safe
    from dbbd.engine.hooks import PreciseBNHook
    runner = _spunet_seg_runner(demo_root, tmp_path)
    assert any(isinstance(h, PreciseBNHook) for h in runner.hooks)
    runner.train()
    state = load_checkpoint_safe(osp.join(str(tmp_path), 'epoch_1.pth'))[
        'state_dict']
    model = runner.model
    model.train()
    PreciseBNHook.recompute(model, runner.train_dataloader, 16)
    for k, v in model.state_dict().items():
        if 'running_' in k:
            torch.testing.assert_close(state[k], v, msg=k)


def test_bad_settings_are_one_line():
    from dbbd.engine.hooks import PreciseBNHook
    with pytest.raises(ValueError, match='num_iters'):
        PreciseBNHook(num_iters=0)
