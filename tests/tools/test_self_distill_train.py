"""SelfDistill through ``tools/train.py``: the small demo config trains an
epoch, is SIGKILLed in the middle of the second and resumed to its end,
bit for bit the run it would have been (student, EMA teacher, momentum
step, AdamW state, logged values); its checkpoint loads into
``configs/dbbd/seg_spunet_small_demo_ft.py`` through ``pretrained=``, the
student's backbone and not the teacher's."""
import os.path as osp

import torch

import dbbd_faults

CONFIG = osp.join(dbbd_faults.REPO, 'configs', 'self_distill',
                  'self_distill_spunet_small_demo.py')
SEG_FT = osp.join(dbbd_faults.REPO, 'configs', 'dbbd',
                  'seg_spunet_small_demo_ft.py')
ITERS_PER_EPOCH = 2  # 4 demo scenes, batch 2
TIMEOUT = 300


def _write_config(path, data_root, hooks=()):
    """The demo config on the test rooms, 2 epochs, a checkpoint and a log
    line every epoch / iteration, raw logged values, local scalars only;
    ``hooks`` added to its own."""
    from mmengine.config import Config
    base_hooks = list(Config.fromfile(CONFIG).to_dict()['custom_hooks'])
    lines = [
        f'_base_ = [{CONFIG!r}]',
        f'train_dataloader = dict(dataset=dict(data_root={data_root!r}, '
        'auto_prepare=None))',
        f'val_dataloader = dict(dataset=dict(data_root={data_root!r}, '
        'auto_prepare=None))',
        'train_cfg = dict(max_epochs=2, val_interval=2)',
        "visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])",
        'log_processor = dict(window_size=1)',
    ]
    if hooks:
        lines.append("custom_imports = dict(imports=['dbbd_faults'], "
                     'allow_failed_imports=False)')
        lines.append(f'custom_hooks = {base_hooks + list(hooks)!r}')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return str(path)


def _equal(a, b, where):
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert set(a) == set(b), where
        for k in a:
            _equal(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _equal(x, y, f'{where}[{i}]')
    else:
        assert a == b, where


def test_killed_in_epoch_two_resumes_bit_exact_and_loads_downstream(
        demo_root, tmp_path):
    from dbbd.engine import load_checkpoint_safe
    cfg = _write_config(tmp_path / 'cfg.py', demo_root)
    straight = str(tmp_path / 'straight')
    r = dbbd_faults.run_train(cfg, '--work-dir', straight, timeout=TIMEOUT)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]

    # one epoch, then killed after iteration 1 of epoch 2 (its weights and
    # teacher update in memory only) ...
    work = str(tmp_path / 'killed')
    marker = str(tmp_path / 'marker')
    fault = _write_config(tmp_path / 'fault.py', demo_root, hooks=[dict(
        type='PauseAtIterHook', epoch=2, batch_idx=1, marker=marker)])
    log = str(tmp_path / 'killed.log')
    proc = dbbd_faults.start_train(log, fault, '--work-dir', work)
    try:
        dbbd_faults.wait_for_marker(proc, marker, log, timeout=TIMEOUT)
    finally:
        dbbd_faults.kill_group(proc)
    assert proc.returncode == -9
    assert not osp.exists(osp.join(work, 'epoch_2.pth'))
    # ... and resumed from epoch_1.pth to the end
    r = dbbd_faults.run_train(cfg, '--work-dir', work, '--resume',
                              timeout=TIMEOUT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert 'resumed epoch: 1' in out.lower()
    assert 'Epoch(train) [1]' not in out and 'Epoch(train) [2]' in out

    a = load_checkpoint_safe(osp.join(straight, 'epoch_2.pth'))
    b = load_checkpoint_safe(osp.join(work, 'epoch_2.pth'))
    sd = a['state_dict']
    # student, teacher and momentum step, bit for bit
    assert any(k.startswith('teacher_backbone.') for k in sd)
    assert int(sd['teacher_step']) == 2 * ITERS_PER_EPOCH
    _equal(sd, b['state_dict'], 'state_dict')
    _equal(a['optimizer'], b['optimizer'], 'optimizer')
    _equal(a['param_schedulers'], b['param_schedulers'], 'param_schedulers')
    # the teacher moved away from the student, and from its start
    t, s = sd['teacher_backbone.conv_input.0.weight'], sd[
        'backbone.conv_input.0.weight']
    assert not torch.equal(t, s)
    first = load_checkpoint_safe(osp.join(straight, 'epoch_1.pth'))
    assert int(first['state_dict']['teacher_step']) == ITERS_PER_EPOCH
    assert not torch.equal(
        t, first['state_dict']['teacher_backbone.conv_input.0.weight'])
    # every logged value (loss, teacher momentum and temperature) the same
    scalars = dbbd_faults.read_scalars(straight)
    assert scalars == dbbd_faults.read_scalars(work)
    momenta = [scalars['train'][i]['train/teacher_momentum']
               for i in range(1, 2 * ITERS_PER_EPOCH + 1)]
    assert momenta[0] == 0.0 and 0.9 <= momenta[1] < momenta[-1] <= 1.0

    # the checkpoint into the SpUNet segmentation demo: the student's
    from mmengine.config import Config

    from dbbd.models.segmentors.config import apply_top_level
    from dbbd.registry import MODELS
    seg = Config.fromfile(SEG_FT)
    apply_top_level(seg, pretrained=osp.join(work, 'epoch_2.pth'))
    model = MODELS.build(seg.model)
    model.init_weights()
    for k, v in model.backbone.state_dict().items():
        assert torch.equal(v, sd[f'backbone.{k}']), k
    assert not torch.equal(model.backbone.conv_input[0].weight,
                           sd['teacher_backbone.conv_input.0.weight'])
