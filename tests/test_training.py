"""Training through mmengine's Runner: the checks of the training spec.

Configs are the real ones under ``configs/``; the data is the session's
tiny prepared synthetic dataset; widths are shrunk so each test is fast.
"""
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from tiny import FULL, SMALL, build_runner, tiny_cfg  # noqa: E402


def first_batch(runner):
    return next(iter(runner.train_dataloader))


# -- configs -----------------------------------------------------------------


def test_full_config_defaults():
    cfg = Config.fromfile(FULL)
    assert cfg.default_scope == 'dbbd'
    assert cfg.optim_wrapper.optimizer == dict(
        type='AdamW', lr=1e-3, weight_decay=0.01)
    sched = cfg.param_scheduler[0]
    assert sched.type == 'ResumableCosineAnnealingLR'
    assert sched.eta_min == 1e-5
    # the length is the run's (train_cfg.max_epochs), not written twice
    assert 'end' not in sched and 'T_max' not in sched
    assert cfg.train_cfg.max_epochs == 100
    assert cfg.train_cfg.val_interval == 5
    assert cfg.default_hooks.checkpoint.interval == 10
    assert cfg.default_hooks.checkpoint.save_best == 'loss'
    assert cfg.train_dataloader.batch_size == 8
    assert cfg.model.backbone.encoder.hidden_dims == [64, 128]
    assert cfg.model.backbone.encoder.out_channels == 96
    assert cfg.model.backbone.hidden_channels == 96
    assert cfg.model.backbone.propagator.hidden_channels == 128
    assert cfg.model.loss.alpha == 1.0 and cfg.model.loss.beta == 0.5
    assert cfg.model.loss.point_loss.num_samples == 4096
    assert cfg.model.loss.region_loss.temperature == 0.1
    assert cfg.train_dataloader.dataset.max_scenes is None
    assert isinstance(cfg.randomness.seed, int)
    es = [h for h in cfg.custom_hooks if 'EarlyStopping' in h.type][0]
    assert es.monitor == 'loss' and es.min_delta < 0.1


def _flatten(d, prefix=''):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f'{prefix}{k}.'))
        else:
            out[f'{prefix}{k}'] = v
    return out


def test_small_mode_overrides_exactly_the_small_settings():
    full = _flatten(Config.fromfile(FULL).to_dict())
    small = _flatten(Config.fromfile(SMALL).to_dict())
    changed = {k for k in set(full) | set(small) if full.get(k) !=
               small.get(k)}
    assert changed == {
        'model.backbone.hidden_channels', 'model.backbone.encoder.hidden_dims',
        'model.backbone.encoder.out_channels',
        'model.backbone.propagator.hidden_channels',
        'model.backbone.propagator.out_channels', 'model.region_head.out_channels',
        'model.point_head.out_channels',
        'model.loss.point_loss.num_samples',
        'train_dataloader.batch_size', 'train_dataloader.num_workers',
        'train_dataloader.persistent_workers',
        'train_dataloader.dataset.max_scenes',
        'train_dataloader.dataset.max_depth', 'val_dataloader.batch_size',
        'val_dataloader.num_workers', 'val_dataloader.persistent_workers',
        'val_dataloader.dataset.max_scenes',
        'val_dataloader.dataset.max_depth'
    }
    assert small['model.backbone.encoder.hidden_dims'] == [32, 64]
    assert small['model.backbone.encoder.out_channels'] == 64
    assert small['model.backbone.hidden_channels'] == 64
    assert small['model.region_head.out_channels'] == 64
    assert small['model.backbone.propagator.hidden_channels'] == 64
    assert small['train_dataloader.batch_size'] == 2
    assert small['train_dataloader.num_workers'] == 0
    assert small['model.loss.point_loss.num_samples'] == 512
    assert small['train_dataloader.dataset.max_scenes'] == 4
    assert small['val_dataloader.dataset.max_scenes'] == 2
    assert small['train_dataloader.dataset.max_depth'] == 2


@pytest.mark.parametrize('ext', ['.yaml', '.py'])
def test_config_dump_and_reload_round_trip(tmp_path, ext):
    cfg = Config.fromfile(SMALL)
    path = tmp_path / f'dumped{ext}'
    cfg.dump(str(path))
    again = Config.fromfile(str(path))
    assert again.to_dict() == cfg.to_dict()


def test_custom_values_from_the_command_line():
    from tools.train import build_config, parse_args
    args = parse_args([
        SMALL, '--cfg-options', 'optim_wrapper.optimizer.lr=0.01',
        'train_dataloader.batch_size=3', 'data_root=/somewhere'
    ])
    cfg = build_config(args)
    assert cfg.optim_wrapper.optimizer.lr == 0.01
    assert cfg.train_dataloader.batch_size == 3
    assert cfg.train_dataloader.dataset.data_root == '/somewhere'
    assert cfg.val_dataloader.dataset.data_root == '/somewhere'
    assert cfg.work_dir == osp.join('work_dirs', 'dbbd_small_scannet')


def test_custom_values_stay_on_top_of_small_mode(tmp_path):
    child = tmp_path / 'my_small.py'
    child.write_text(
        f'_base_ = [{SMALL!r}]\n'
        'train_dataloader = dict(batch_size=6, dataset=dict(max_scenes=3))\n'
        'model = dict(backbone=dict(encoder=dict(hidden_dims=[16, 16])))\n')
    cfg = Config.fromfile(str(child))
    assert cfg.train_dataloader.batch_size == 6
    assert cfg.train_dataloader.dataset.max_scenes == 3
    assert cfg.model.backbone.encoder.hidden_dims == [16, 16]
    # the rest of small mode is untouched
    assert cfg.model.backbone.encoder.out_channels == 64
    assert cfg.train_dataloader.dataset.max_depth == 2
    assert cfg.val_dataloader.dataset.max_scenes == 2
    assert cfg.train_dataloader.num_workers == 0


# -- data through the runner ------------------------------------------------


def test_runner_loads_data_respecting_max_scenes_and_batches(
        demo_root, tmp_path):
    cfg = tiny_cfg(demo_root, tmp_path)
    cfg.train_dataloader.dataset.max_scenes = 3
    runner = build_runner(cfg)
    loader = runner.train_dataloader
    assert len(loader.dataset) == 3
    assert len(runner.val_dataloader.dataset) == 2
    batch = first_batch(runner)
    inp = batch['inputs']
    assert len(batch['data_samples']) == 2
    assert inp['offset'].shape == (3, )
    assert inp['view1']['coord'].shape[0] == int(inp['offset'][-1])
    assert inp['point_region'].shape[0] == 3  # small mode: depth 2
    # a level of the batch is one flat id space
    assert int(inp['point_region'][1].max()) + 1 == int(
        inp['region_offset'][1, -1])


# -- model, optimiser, scheduler -------------------------------------------


def test_runner_builds_model_loss_optimizer_scheduler(demo_root, tmp_path):
    from dbbd.models import DBBD
    from dbbd.models.losses import DBBDLoss
    cfg = tiny_cfg(demo_root, tmp_path)
    runner = build_runner(cfg)
    assert isinstance(runner.model, DBBD)
    assert isinstance(runner.model.criterion, DBBDLoss)
    ow = runner.build_optim_wrapper(cfg.optim_wrapper)
    assert isinstance(ow.optimizer, torch.optim.AdamW)
    assert ow.optimizer.defaults['lr'] == 1e-3
    assert ow.optimizer.defaults['weight_decay'] == 0.01
    runner.optim_wrapper = ow
    runner.train_loop  # built first, as Runner.train does
    scheds = runner.build_param_scheduler(cfg.param_scheduler)
    assert type(scheds[0]).__name__ == 'ResumableCosineAnnealingLR'
    assert scheds[0].eta_min == 1e-5
    # the cosine spans the run, in iterations
    run = cfg.train_cfg.max_epochs * len(runner.train_dataloader)
    assert (scheds[0].begin, scheds[0].end, scheds[0].T_max) == (0, run, run)


def _step(runner, ow, batch):
    runner.model.train()
    return runner.model.train_step(batch, ow)


def test_train_step_finite_loss_and_weights_change(demo_root, tmp_path):
    cfg = tiny_cfg(demo_root, tmp_path)
    runner = build_runner(cfg)
    model = runner.model
    ow = runner.build_optim_wrapper(cfg.optim_wrapper)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    data = model.data_preprocessor(first_batch(runner), True)
    loss, log_vars = model.parse_losses(model(**data, mode='loss'))
    assert torch.isfinite(loss)
    assert {'loss', 'loss_region', 'loss_point'} <= set(log_vars)
    ow.backward(loss)
    # every parameter gets a gradient from this batch (a tree of several
    # levels and scenes) and none is exempt: parameters that mathematically
    # could not get one, like a bias before a softmax, were taken out of
    # the model instead. (AdamW's weight decay would move even a parameter
    # without a gradient, so the gradients are what is checked.)
    params = dict(model.named_parameters())
    no_grad = [k for k, p in params.items()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert no_grad == [] and len(params) > 30
    ow.step()
    unchanged = [k for k in params if torch.equal(before[k], params[k])]
    assert unchanged == []


def test_overfitting_one_batch_lowers_the_loss(demo_root, tmp_path):
    cfg = tiny_cfg(demo_root, tmp_path)
    runner = build_runner(cfg)
    ow = runner.build_optim_wrapper(cfg.optim_wrapper)
    batch = first_batch(runner)
    losses = [float(_step(runner, ow, batch)['loss'].detach())
              for _ in range(10)]
    assert losses[-1] < losses[0] - 0.05, losses


# -- the training loop, checkpoints, resume ---------------------------------


@pytest.fixture(scope='module')
def trained(demo_root, tmp_path_factory):
    """A 2-epoch run of the tiny small-mode model (shared by the checks)."""
    work = tmp_path_factory.mktemp('trained')
    cfg = tiny_cfg(demo_root, work, max_epochs=2)
    runner = build_runner(cfg)
    runner.train()
    return cfg, runner, work


def test_training_runs_all_epochs_and_records_history(trained):
    cfg, runner, work = trained
    iters_per_epoch = len(runner.train_dataloader)
    assert runner.epoch == 2
    assert runner.iter == 2 * iters_per_epoch
    hub = runner.message_hub
    train_loss = hub.get_scalar('train/loss')
    assert len(train_loss.data[0]) == 2 * iters_per_epoch
    assert all(torch.isfinite(torch.tensor(train_loss.data[0])))
    val_loss = hub.get_scalar('val/loss')
    assert len(val_loss.data[0]) == 2  # validated every epoch


def test_checkpoint_holds_model_optimizer_scheduler_epoch(trained):
    from dbbd.engine import load_checkpoint_safe
    cfg, runner, work = trained
    ckpt = load_checkpoint_safe(osp.join(work, 'epoch_2.pth'))
    assert set(ckpt['state_dict']) == set(runner.model.state_dict())
    assert ckpt['optimizer']['state']  # AdamW moments
    assert ckpt['param_schedulers'][0]['last_step'] > 0
    assert ckpt['meta']['epoch'] == 2
    assert ckpt['meta']['iter'] == runner.iter
    assert osp.isfile(osp.join(work, 'last_checkpoint'))
    best = [f for f in os.listdir(work) if f.startswith('best_loss')]
    assert len(best) == 1


def test_loading_restores_and_resume_continues(trained, demo_root,
                                               tmp_path):
    import shutil
    cfg, runner, work = trained
    # resume in a copy of the work dir, so the shared run stays as it was
    copy_dir = tmp_path / 'resumed'
    shutil.copytree(work, copy_dir)
    cfg3 = tiny_cfg(demo_root, copy_dir, max_epochs=3)
    cfg3.resume = True
    r3 = build_runner(cfg3)
    r3.train()  # loads epoch_2.pth, trains epoch 3 only
    assert r3.epoch == 3
    assert r3.iter == 3 * len(r3.train_dataloader)
    train_loss = r3.message_hub.get_scalar('train/loss')
    # history restored from the checkpoint plus the new epoch's iterations
    assert len(train_loss.data[0]) == 3 * len(r3.train_dataloader)
    # the restored weights were the trained ones, not a fresh init
    from dbbd.engine import load_checkpoint_safe
    c2 = load_checkpoint_safe(osp.join(work, 'epoch_2.pth'))
    cfg_load = tiny_cfg(demo_root, tmp_path / 'load', max_epochs=2)
    cfg_load.load_from = osp.join(work, 'epoch_2.pth')
    cfg_load.resume = True
    r_load = build_runner(cfg_load)
    r_load.load_or_resume()
    assert r_load.epoch == 2
    for k, v in r_load.model.state_dict().items():
        assert torch.equal(v, c2['state_dict'][k]), k
    opt = r_load.optim_wrapper.optimizer.state_dict()
    assert opt['state'].keys() == c2['optimizer']['state'].keys()
    assert r_load.param_schedulers[0].last_step == \
        c2['param_schedulers'][0]['last_step']


def test_validation_returns_metrics_without_gradients(trained):
    cfg, runner, work = trained
    seen = []
    model = runner.model
    handle = model.register_forward_hook(
        lambda m, i, o: seen.append(torch.is_grad_enabled()))
    try:
        metrics = runner.val_loop.run()
    finally:
        handle.remove()
    assert seen and not any(seen)
    assert {'loss', 'loss_region', 'loss_point'} <= set(metrics)
    assert all(torch.isfinite(torch.tensor(v)) for v in metrics.values())


def test_small_mode_builds_the_small_encoder():
    from dbbd.registry import MODELS
    cfg = Config.fromfile(SMALL)
    model = MODELS.build(cfg.model)
    linears = [m for m in model.backbone.encoder.modules()
               if isinstance(m, torch.nn.Linear)]
    assert [l.out_features for l in linears] == [32, 64, 64]
    assert model.backbone.encoder.out_channels == 64
    full = MODELS.build(Config.fromfile(FULL).model)
    assert [l.out_features for l in full.backbone.encoder.modules()
            if isinstance(l, torch.nn.Linear)] == [64, 128, 96]
    n_small = sum(p.numel() for p in model.parameters())
    n_full = sum(p.numel() for p in full.parameters())
    assert n_small < n_full / 2


def test_top_level_feat_keys_sets_both_loaders_and_the_model():
    from dbbd.datasets.formatting import check_feat_width, pipeline_feat_keys
    from tools.train import build_config, parse_args
    cfg = build_config(parse_args(
        [SMALL, '--cfg-options', "feat_keys=('normal','color')"]))
    for loader in ('train_dataloader', 'val_dataloader'):
        assert pipeline_feat_keys(cfg[loader].dataset) == ('normal', 'color')
    assert cfg.model.backbone.in_channels == 6
    check_feat_width(cfg)  # agree
    # set on one side only: the one-line error names both and the fix
    cfg = build_config(parse_args(
        [SMALL, '--cfg-options', 'model.backbone.in_channels=6']))
    with pytest.raises(ValueError, match=r"feat_keys \('normal',\) make 3 "
                       r'input channels but model.backbone.in_channels is 6'):
        check_feat_width(cfg)
    with pytest.raises(SystemExit):
        build_config(parse_args([SMALL, '--cfg-options', 'feat_keys=rgb']))


@pytest.mark.parametrize('name', ['scannet', 'small_scannet', 'small_demo',
                                  'spunet_scannet', 'spunet_small_scannet',
                                  'spunet_small_demo'])
def test_masked_configs_add_only_the_masking(name):
    """Each dbbd_masked_* leaf is its unmasked sibling plus the mask token
    and a RandomPatchMask step in the training views."""
    base = osp.join(osp.dirname(SMALL), f'dbbd_{name}.py')
    masked = Config.fromfile(base.replace('dbbd_', 'dbbd_masked_'))
    plain = Config.fromfile(base)
    a, b = _flatten(plain.to_dict()), _flatten(masked.to_dict())
    changed = {k for k in set(a) | set(b) if a.get(k) != b.get(k)}
    assert changed == {'model.backbone.mask_token', 'masking',
                       'train_dataloader.dataset.pipeline'}
    views = masked.train_dataloader.dataset.pipeline[0]['transforms']
    assert views[:-1] == plain.train_dataloader.dataset.pipeline[0][
        'transforms']
    assert views[-1]['type'] == 'RandomPatchMask'
