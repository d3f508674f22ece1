"""End to end: ``tools/train.py`` as a real subprocess, resume, TensorBoard.
"""
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest

from tiny import DEMO, REPO, SMALL, TRAIN, cfg_options


TINY = cfg_options()


def run_train(*args, cwd=None, timeout=300):
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    return subprocess.run([sys.executable, TRAIN, *args], cwd=cwd or REPO,
                          env=env, capture_output=True, text=True,
                          timeout=timeout)


def read_scalars(work_dir):
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    files = glob.glob(osp.join(work_dir, '*', 'vis_data', 'events.out.*'))
    assert files, f'no TensorBoard event file under {work_dir}'
    series = {}
    for f in sorted(files):
        acc = EventAccumulator(f)
        acc.Reload()
        for tag in acc.Tags()['scalars']:
            series.setdefault(tag, []).extend(
                (e.step, e.value) for e in acc.Scalars(tag))
    return series


def test_demo_trains_then_resumes_with_tensorboard(demo_root, tmp_path,
                                                   capsys):
    work = str(tmp_path / 'work')
    common = [DEMO, '--work-dir', work, '--cfg-options',
              f'data_root={demo_root}', *TINY]
    first = run_train(*common, 'train_cfg.max_epochs=2')
    assert first.returncode == 0, first.stderr[-3000:]
    assert osp.isfile(osp.join(work, 'epoch_2.pth'))
    assert open(osp.join(work, 'last_checkpoint')).read().strip().endswith(
        'epoch_2.pth')
    assert 'eta:' in first.stdout + first.stderr  # log lines with ETA
    # mmengine's notices that say nothing about this run
    for notice in ('The prefix is not set in metric class',
                   '"FileClient" will be deprecated',
                   '"HardDiskBackend" is the alias of "LocalBackend"'):
        assert notice not in first.stdout + first.stderr

    second = run_train(*common, 'train_cfg.max_epochs=3', '--resume')
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    assert 'resumed epoch: 2' in out.lower() or 'resumed' in out.lower()
    assert 'Epoch(train) [1]' not in out  # did not start over
    assert 'Epoch(train) [3]' in out
    assert osp.isfile(osp.join(work, 'epoch_3.pth'))

    series = read_scalars(work)
    for tag in ('train/loss', 'train/loss_region', 'train/loss_point',
                'val/loss', 'learning_rate'):
        assert tag in series, sorted(series)
    iters = 2 * 3  # 4 scenes, batch 2 -> 2 iterations per epoch
    train_steps = sorted({s for s, _ in series['train/loss']})
    assert train_steps == list(range(1, iters + 1))
    assert sorted({s for s, _ in series['val/loss']}) == [1, 2, 3]
    # the cosine spans the run: 2 epochs (4 iterations) at first; resumed
    # with max_epochs=3, the rest of a 3-epoch cosine (said in one line)
    lr = dict(series['learning_rate'])

    def cosine(step, length):
        return 1e-5 + (1e-3 - 1e-5) * (1 + math.cos(math.pi * step /
                                                    length)) / 2

    assert [lr[s] for s in range(1, iters + 1)] == pytest.approx(
        [cosine(s - 1, 4) for s in range(1, 5)] +
        [cosine(s - 1, 6) for s in range(5, 7)], rel=1e-5)
    assert out.count("param_scheduler: the checkpoint's cosine schedule "
                     'spans iterations 0..4 (T_max 4), this config\'s 0..6'
                     ) == 1
    # val/loss is each validation's own value (mmengine would log a running
    # mean over validations): its minimum is the score save_best kept
    from dbbd.engine import load_checkpoint_safe
    ckpt = load_checkpoint_safe(osp.join(work, 'epoch_3.pth'))
    best = ckpt['message_hub']['runtime_info']['best_score']
    val = dict(series['val/loss'])
    assert abs(min(val.values()) - best) < 1e-5, (val, best)
    best_epoch = min(val, key=val.get)
    assert glob.glob(osp.join(work, f'best_loss_epoch_{best_epoch}.pth'))

    # --validate CHECKPOINT (in this process): the metrics of epoch 2's
    # validation again, as one JSON line; nothing trained or saved
    from tools.train import main
    saved = sorted(os.listdir(work))
    capsys.readouterr()
    main(common + [f'experiment_name=validate_{os.getpid()}', '--validate',
                   osp.join(work, 'epoch_2.pth')])
    out = capsys.readouterr().out
    metrics = json.loads(out.strip().splitlines()[-1])
    assert metrics['loss'] == pytest.approx(val[2], rel=1e-6)
    assert {'probe/miou', 'collapse/point_std'} <= set(metrics)
    assert 'Epoch(train)' not in out
    assert sorted(n for n in os.listdir(work) if n in saved) == saved
    assert not [n for n in os.listdir(work)
                if n.endswith('.pth') and n not in saved]


def test_validate_alone_prepares_the_demo_first(tmp_path):
    """``--validate`` on the demo config, its data not prepared yet: the
    preparation's progress comes before anything of the Runner, then one
    validation of the initialised model whose metrics end the output as a
    JSON line; no training, no checkpoint."""
    demo = str(tmp_path / 'demo')
    work = str(tmp_path / 'work')
    small_demo = [f'{loader}.dataset.auto_prepare.{key}={value}'
                  for loader in ('train_dataloader', 'val_dataloader')
                  for key, value in (('demo_root', demo),
                                     ('num_points', 2000), ('workers', 0))]
    r = subprocess.run(
        [sys.executable, TRAIN, DEMO, '--work-dir', work, '--validate',
         '--cfg-options', f'data_root={demo}', *small_demo, *TINY],
        cwd=tmp_path, env=dict(os.environ, PYTHONUNBUFFERED='1'),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=300)
    out = r.stdout
    assert r.returncode == 0, out[-3000:]
    # quiet by default: the Runner's first console line points to the log
    first_of_runner = out.index('Environment, config and hook order: in ')
    assert -1 < out.find('DBBD demo: preparing 4 train + 2 val') < \
        out.find('scenes: 6 found, 6 prepared') < first_of_runner
    metrics = json.loads(out.strip().splitlines()[-1])
    assert f'val/loss: {metrics["loss"]:.4f}' in out[first_of_runner:]
    assert {'probe/miou', 'collapse/point_std'} <= set(metrics)
    assert 'Epoch(train)' not in out
    assert not glob.glob(osp.join(work, '*.pth'))


def test_missing_config_is_one_line(tmp_path):
    r = run_train(str(tmp_path / 'nope.py'))
    assert r.returncode != 0
    err = r.stderr.strip().splitlines()
    assert err == [f'error: config file {tmp_path / "nope.py"} does not exist']


def test_misspelt_config_names_the_close_files(tmp_path, capsys):
    """A config path that names no file: one line with the closest config
    names of its folder (other files and folders are not suggested)."""
    from tools.train import main
    (tmp_path / 'dbbd_small_mine.py').write_text('')
    (tmp_path / 'dbbd_small_mine.txt').write_text('')
    (tmp_path / 'dbbd_small_mines.py').mkdir()
    for wrong, hint in [
            (tmp_path / 'dbbd_smal_mine.py',
             f'; did you mean {tmp_path / "dbbd_small_mine.py"}?'),
            (osp.join(REPO, 'configs', 'dbbd', 'dbbd_small_dmeo.py'),
             f'; did you mean {DEMO}, '),
            (tmp_path / 'no_folder' / 'x.py',
             f' (no folder {tmp_path / "no_folder"})')]:
        with pytest.raises(SystemExit) as info:
            main([str(wrong)])
        assert info.value.code == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        assert err[0].startswith(
            f'error: config file {wrong} does not exist{hint}'), err[0]


def test_unknown_type_names_close_matches(demo_root, tmp_path):
    r = run_train(SMALL, '--work-dir', str(tmp_path), '--cfg-options',
                  f'data_root={demo_root}',
                  'model.backbone.encoder.type=PointNetEncodr')
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert 'model.backbone.encoder' in last and "'PointNetEncodr'" in last
    assert "'PointNetEncoder'" in last  # the close match
    assert 'Traceback' not in r.stderr


def test_missing_data_says_how_to_prepare(tmp_path):
    r = run_train(SMALL, '--work-dir', str(tmp_path), '--cfg-options',
                  f'data_root={tmp_path / "no_data"}')
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert 'does not exist' in last and 'tools/create_data.py' in last
    assert 'Traceback' not in r.stderr


def test_empty_split_is_one_line_before_the_runner(tmp_path):
    """Split folders that hold no prepared scene: one line, before the
    Runner prints anything or makes its timestamped folder in the work
    dir."""
    data = tmp_path / 'data'
    for split in ('train', 'val'):
        (data / split).mkdir(parents=True)
    work = tmp_path / 'work'
    work.mkdir()
    r = run_train(SMALL, '--work-dir', str(work), '--cfg-options',
                  f'data_root={data}')
    assert r.returncode == 1
    assert r.stdout == ''
    assert r.stderr.strip().splitlines() == [
        f'error: train_dataloader.dataset: split folder {data / "train"} '
        'holds no prepared scene (no <scene>/meta.json); prepare it with '
        f'`python tools/create_data.py --src <your ScanNet folder> --out '
        f'{data}` (see README, "Prepare data")']
    assert os.listdir(work) == []


@pytest.mark.parametrize('bad', ['--resume=/no/such.pth', '--amp'])
def test_bad_resume_path_and_amp_on_cpu(bad, demo_root, tmp_path):
    import torch
    if bad == '--amp' and torch.cuda.is_available():
        pytest.skip('AMP is allowed with a GPU')
    r = run_train(SMALL, '--work-dir', str(tmp_path), bad)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines()[-1].startswith('error: ')
    assert 'Traceback' not in r.stderr


def test_yaml_config_cannot_create_python_objects(tmp_path, capsys):
    """A YAML config is data: a ``!!python/...`` tag is refused in one line
    before anything runs (mmengine's own YAML loader would call it)."""
    import yaml
    from mmengine.fileio.handlers.yaml_handler import Loader as MMLoader

    from tools.train import main
    marker = tmp_path / 'MARKER'
    text = ('train_cfg:\n  max_epochs: 1\n'
            f"x: !!python/object/apply:builtins.open ['{marker}', 'w']\n")
    cfg = tmp_path / 'evil.yaml'
    cfg.write_text(text)
    with pytest.raises(SystemExit) as info:
        main([str(cfg), '--work-dir', str(tmp_path / 'work')])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert str(cfg) in err[0] and 'line 3' in err[0]
    assert '!!python/object/apply:builtins.open' in err[0]
    assert not marker.exists()
    # the control: mmengine's loader runs it
    yaml.load(text, Loader=MMLoader)
    assert marker.exists()


@pytest.mark.parametrize('content', ['', 'epoch_7.pth',
                                     'http://127.0.0.1:1/x.pth'])
def test_unusable_last_checkpoint_is_one_line(tmp_path, capsys, content):
    """``--resume`` with a work dir whose last_checkpoint is empty, names a
    missing file or an address: one line, before anything is built."""
    from tools.train import main
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'last_checkpoint').write_text(content)
    with pytest.raises(SystemExit) as info:
        main([SMALL, '--work-dir', str(work), '--resume'])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f'error: {work / "last_checkpoint"} ')
    assert err[0].endswith('--resume PATH (resume=True, load_from=PATH), '
                           'or delete last_checkpoint to start afresh')


def test_second_run_in_a_work_dir_stops_naming_the_first(demo_root,
                                                         tmp_path):
    """This process holds the work dir's run lock, as a running
    tools/train.py would; a real tools/train.py started there stops with
    one line naming this process's PID and writes nothing."""
    from dbbd.engine.run_lock import (acquire_work_dir_lock,
                                      release_work_dir_lock)
    work = str(tmp_path / 'work')
    assert acquire_work_dir_lock(work)
    try:
        r = run_train(SMALL, '--work-dir', work, '--cfg-options',
                      f'data_root={demo_root}')
    finally:
        release_work_dir_lock(work)
    assert r.returncode == 1
    err = r.stderr.strip().splitlines()
    assert len(err) == 1, r.stderr[-2000:]
    assert err[0].startswith(f'error: work dir {work} is in use by another '
                             f'training run (PID {os.getpid()} on ')
    assert os.listdir(work) == ['.dbbd-run.lock']


@pytest.mark.parametrize('option, message', [
    ('model.backbone.encoder.hiden_dims=[1]',
     "model.backbone.encoder.hiden_dims: PointNetEncoder has no parameter "
     "'hiden_dims'; did you mean 'hidden_dims'? it accepts in_channels, "
     'hidden_dims, out_channels, pooling, coord_channels'),
    ('model.backbone.hidden_channels=0',
     'model.backbone.hidden_channels: got 0 (int); expected a positive int'),
    # raised while the model is built
    ('model.loss.point_loss.temperature=0',
     'PointLoss: temperature must be a finite number > 0, got 0'),
])
def test_config_abuse_is_one_line(demo_root, tmp_path, capsys, option,
                                  message):
    from tools.train import main
    with pytest.raises(SystemExit) as info:
        main([SMALL, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
              f'data_root={demo_root}', option])
    assert info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f'error: {message}']


def test_spunet_demo_trains_one_epoch_then_resumes_to_two(demo_root,
                                                          tmp_path):
    """DBBD on a SpUNet scene backbone through tools/train.py: a tiny
    SpUNet (10 cm voxels) on the test rooms, 1 epoch, then --resume to 2."""
    spunet = os.path.join(REPO, 'configs', 'dbbd',
                          'dbbd_spunet_small_demo.py')
    work = str(tmp_path / 'work')
    common = [spunet, '--work-dir', work, '--cfg-options',
              f'data_root={demo_root}',
              'model.backbone.scene_backbone.base_channels=8',
              'model.backbone.scene_backbone.channels=[8,16,16,8]',
              'model.backbone.scene_backbone.layers=[1,1,1,1]',
              'model.backbone.scene_backbone.voxel_size=0.1',
              'model.backbone.hidden_channels=16',
              'model.backbone.propagator.hidden_channels=16',
              'model.backbone.propagator.out_channels=16',
              'model.region_head.out_channels=16',
              'model.point_head.out_channels=16']
    first = run_train(*common, 'train_cfg.max_epochs=1')
    assert first.returncode == 0, first.stderr[-3000:]
    from dbbd.engine.checkpoint import load_checkpoint_safe
    ckpt = load_checkpoint_safe(osp.join(work, 'epoch_1.pth'))
    keys = ckpt['state_dict']
    assert any(k.startswith('backbone.scene_backbone.enc.') for k in keys)
    assert not any(k.startswith('backbone.encoder.') for k in keys)
    second = run_train(*common, 'train_cfg.max_epochs=2', '--resume')
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    assert 'Epoch(train) [1]' not in out and 'Epoch(train) [2]' in out
    assert load_checkpoint_safe(osp.join(work, 'epoch_2.pth'))['meta'][
        'epoch'] == 2


#: A tiny PTv3 (two stages, 8 and 16 channels, patches of 32 voxels, 10 cm
#: voxels): the small configs' key names, the test's widths.
TINY_PTV3 = dict(stride=[2], enc_depths=[1, 1], enc_channels=[8, 16],
                 enc_num_head=[1, 2], enc_patch_size=[32, 32],
                 dec_depths=[1], dec_channels=[8], dec_num_head=[1],
                 dec_patch_size=[32], voxel_size=0.1)


def _options(prefix, values):
    return [f'{prefix}.{k}={json.dumps(v, separators=(",", ":"))}'
            for k, v in values.items()]


def test_ptv3_demo_trains_resumes_and_fine_tunes_from_its_checkpoint(
        demo_root, tmp_path, capsys):
    """DBBD on a PTv3 scene backbone through tools/train.py: 1 epoch,
    --resume to 2; then seg_ptv3_small_demo_ft.py's model with that
    checkpoint as pretrained= (initialised as the runner does) takes every
    tensor of the tree's PTv3 and logs them in one line."""
    configs = os.path.join(REPO, 'configs', 'dbbd')
    work = str(tmp_path / 'work')
    common = [os.path.join(configs, 'dbbd_ptv3_small_demo.py'),
              '--work-dir', work, '--cfg-options', f'data_root={demo_root}',
              *_options('model.backbone.scene_backbone', TINY_PTV3),
              'model.backbone.hidden_channels=16',
              'model.backbone.propagator.hidden_channels=16',
              'model.backbone.propagator.out_channels=16',
              'model.region_head.out_channels=16',
              'model.point_head.out_channels=16']
    first = run_train(*common, 'train_cfg.max_epochs=1')
    assert first.returncode == 0, first.stderr[-3000:]
    from dbbd.engine.checkpoint import load_checkpoint_safe
    keys = load_checkpoint_safe(osp.join(work, 'epoch_1.pth'))['state_dict']
    assert 'backbone.scene_backbone.enc.enc1.down.proj.weight' in keys
    second = run_train(*common, 'train_cfg.max_epochs=2', '--resume')
    out = second.stdout + second.stderr
    assert second.returncode == 0, out[-3000:]
    assert 'Epoch(train) [1]' not in out and 'Epoch(train) [2]' in out
    ckpt = osp.join(work, 'epoch_2.pth')
    state = load_checkpoint_safe(ckpt)
    assert state['meta']['epoch'] == 2

    import torch
    from mmengine.config import Config
    from mmengine.logging import MMLogger

    from dbbd.registry import MODELS
    cfg = Config.fromfile(os.path.join(configs, 'seg_ptv3_small_demo_ft.py'))
    cfg.merge_from_dict(dict(model=dict(pretrained=ckpt,
                                        backbone=TINY_PTV3)))
    MMLogger.get_instance('test_ptv3_demo')   # the current logger
    capsys.readouterr()
    seg = MODELS.build(cfg.model)
    seg.init_weights()
    lines = [line for line in capsys.readouterr().out.splitlines()
             if 'pretrained:' in line]
    tree_ptv3 = {k[len('backbone.scene_backbone.'):]: v
                 for k, v in state['state_dict'].items()
                 if k.startswith('backbone.scene_backbone.')}
    got = seg.backbone.state_dict()
    assert set(got) == set(tree_ptv3)
    assert all(torch.equal(got[k], v) for k, v in tree_ptv3.items())
    assert len(lines) == 1
    assert (f'pretrained: loaded {len(tree_ptv3)} backbone tensors from '
            f'{ckpt} (training checkpoint, epoch 2, its tree backbone\'s '
            'scene backbone); starting fresh: head') in lines[0]
