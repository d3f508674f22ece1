"""End to end, as real subprocesses: pre-train (demo, 1 epoch), fine-tune
with pretrained=, tools/weight_drift.py, tools/test.py with --out and
--show-dir; and tools/transfer.py."""
import json
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest

from tiny import (DEMO, REPO, SEG_DEMO, TEST, TINY_SEG_MODEL, TRAIN,
                  cfg_options)

TRANSFER = osp.join(REPO, 'tools', 'transfer.py')
DRIFT = osp.join(REPO, 'tools', 'weight_drift.py')


def run(*args, timeout=300):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    r = subprocess.run([sys.executable, *args], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=timeout)
    return r, r.stdout + r.stderr


def seg_scores(pred, gt, k=20):
    """mIoU, allAcc computed here: classes in the ground truth or the
    prediction, -1 never counted."""
    keep = gt >= 0
    p, g = pred[keep], gt[keep]
    ious = []
    for c in range(k):
        union = np.sum((p == c) | (g == c))
        if union:
            ious.append(np.sum((p == c) & (g == c)) / union)
    return float(np.mean(ious)), float(np.mean(p == g))


def test_pretrain_finetune_test(demo_root, tmp_path):
    from dbbd.datasets.scene_io import list_prepared, load_scene
    pre = str(tmp_path / 'pre')
    # no validation in the training runs (val_begin=2): time; the test
    # tool scores
    r, out = run(TRAIN, DEMO, '--work-dir', pre, '--cfg-options',
                 f'data_root={demo_root}', 'train_cfg.max_epochs=1',
                 'train_cfg.val_begin=2', *cfg_options())
    assert r.returncode == 0, out[-3000:]
    ckpt = osp.join(pre, 'epoch_1.pth')

    seg_opts = [f'data_root={demo_root}', *cfg_options(TINY_SEG_MODEL)]
    ft = str(tmp_path / 'ft')
    r, out = run(TRAIN, SEG_DEMO['ft'], '--work-dir', ft, '--cfg-options',
                 *seg_opts, f'pretrained={ckpt}', 'train_cfg.max_epochs=1',
                 'train_cfg.val_begin=2')
    assert r.returncode == 0, out[-3000:]
    assert re.search(rf'pretrained: loaded \d+ backbone tensors from '
                     rf'{re.escape(ckpt)} .*starting fresh: head', out)
    # how far the fine-tune moved the pre-trained backbone: the run's
    # config and pretrained= read from its checkpoint
    r, out = run(DRIFT, osp.join(ft, 'epoch_1.pth'), '--json')
    assert r.returncode == 0, out[-3000:]
    drift = json.loads(r.stdout.strip().splitlines()[-1])
    assert drift['pretrained'] == ckpt
    assert 0 < drift['total']['change'] < 0.5, drift['total']
    assert drift['total']['cosine'] > 0.8, drift['total']

    preds, pics = str(tmp_path / 'preds'), str(tmp_path / 'pics')
    r, out = run(TEST, SEG_DEMO['ft'], osp.join(ft, 'epoch_1.pth'),
                 '--work-dir', str(tmp_path / 'test'), '--out', preds,
                 '--show-dir', pics, '--cfg-options', *seg_opts)
    assert r.returncode == 0, out[-3000:]
    line = re.search(r'epoch_1\.pth: mIoU ([\d.]+)  mAcc ([\d.]+)  '
                     r'allAcc ([\d.]+)', out)
    assert line, out[-2000:]
    table = re.search(r'class +IoU +Acc +points\n-+.*\n((?:.*\n){20})', out)
    assert table and table.group(1).startswith('wall ')  # per class
    # the scores are those of the written predictions, every point of
    # every validation scene
    scenes = [load_scene(d) for d in list_prepared(osp.join(demo_root,
                                                            'val'))]
    pred = [np.load(osp.join(preds, f'{s["scene_id"]}.npy'),
                    allow_pickle=False) for s in scenes]
    for s, p in zip(scenes, pred):
        assert p.shape == (s['coord'].shape[0], )
    miou, acc = seg_scores(np.concatenate(pred), np.concatenate(
        [np.asarray(s['segment'], np.int64) for s in scenes]))
    assert float(line.group(1)) == pytest.approx(100 * miou, abs=0.006)
    assert float(line.group(3)) == pytest.approx(100 * acc, abs=0.006)
    from matplotlib import image as mpimg
    for s in scenes:
        img = mpimg.imread(osp.join(pics, f'{s["scene_id"]}.png'))
        assert img.ndim == 3 and img.shape[1] > img.shape[0]  # two halves

    # a pre-training checkpoint with its own config: that config's
    # validation metrics (with a segmentation config: the next test)
    from tools.test import main
    metrics = main([DEMO, ckpt, '--work-dir', str(tmp_path / 'test_pre'),
                    '--cfg-options', f'data_root={demo_root}',
                    *cfg_options()])
    assert 'loss' in metrics and 'probe/miou' in metrics


def test_test_tool_names_the_fine_tuning_config(demo_root, tmp_path,
                                                capsys):
    """A checkpoint of the shipped small pre-training widths: the message
    names the small fine-tuning configs."""
    import torch
    from mmengine.config import Config

    from dbbd.engine.hooks.checkpoint_hook import to_plain
    cfg = Config.fromfile(DEMO)
    path = str(tmp_path / 'pre.pth')
    torch.save(dict(meta=dict(model_cfg=to_plain(cfg.model)),
                    state_dict={'backbone.x': torch.zeros(1),
                                'region_head.y': torch.zeros(1)}), path)
    from tools.test import main
    with pytest.raises(SystemExit):
        main([SEG_DEMO['ft'], path])
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and 'is a pre-training checkpoint' in err[0]
    assert (f'tools/train.py configs/dbbd/seg_pointnet_small_demo_ft.py '
            f'--cfg-options pretrained={path}') in err[0]
    assert 'seg_pointnet_small_scannet_ft.py' in err[0]


def test_transfer_compares_methods_on_spunet_as_a_subprocess(
        demo_root, tmp_path, capsys, monkeypatch):
    """tools/transfer.py with the baseline pre-training (SceneContrast on
    a tiny SpUNet) and scratch on the same SpUNet: the segmentation configs
    of the backbone's family are picked, the pre-trained SpUNet loads into
    the fine-tune and the fitted linear probe, the floors are printed
    beside the tables, and the JSON line carries every run's per-class
    IoU."""
    contrast = osp.join('configs', 'scene_contrast',
                        'scene_contrast_spunet_small_demo.py')
    spunet = ['model.backbone.base_channels=8',
              'model.backbone.channels=[8,16,16,8]',
              'model.backbone.layers=[1,1,1,1]',
              'model.backbone.voxel_size=0.1']
    args = ['--pretrain-configs', contrast, 'none', '--seeds', '3',
            '--epochs', '1', '--pretrain-epochs', '1', '--labelled-points',
            '40', '--work-dir', str(tmp_path / 'transfer'), '--cfg-options',
            f'data_root={demo_root}', *spunet]
    r, out = run(TRANSFER, *args, timeout=400)
    assert r.returncode == 0, out[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    rows = {(x['pretrain'], x['protocol']) for x in result['transfer']}
    assert rows == {('scene_contrast_spunet_small_demo', 'linear probe'),
                    ('scene_contrast_spunet_small_demo', 'fine-tune'),
                    ('none (spunet)', 'scratch')}
    assert all('seg_spunet_small_demo' in x['config']
               for x in result['runs'])
    assert result['pretrain_seconds']['scene_contrast_spunet_small_demo']
    assert '| pre-training | linear probe mIoU | fine-tune mIoU |' in out
    for floor in ('majority class', 'probe on raw features',
                  'probe on untrained spunet'):
        assert f'| floor: {floor} |' in out
    ft = next(x for x in result['runs'] if x['protocol'] == 'fine-tune')
    log = open(osp.join(ft['work_dir'], 'train.log')).read()
    assert re.search(r'pretrained: loaded \d+ backbone tensors', log)
    # the probe read the pre-trained SpUNet through pretrained=
    assert re.search(r'pretrained: loaded \d+ backbone tensors from '
                     r'\S+/seed3/pretrain/epoch_1\.pth', out)
    # the score is the last validation of the run, as its log says
    scratch = next(x for x in result['runs'] if x['protocol'] == 'scratch')
    assert scratch['seed'] == 3
    assert scratch['labelled'] == 'all scenes, 40 points/scene'
    stamp = next(d for d in os.listdir(scratch['work_dir'])
                 if osp.isdir(osp.join(scratch['work_dir'], d, 'vis_data')))
    vis = osp.join(scratch['work_dir'], stamp, 'vis_data')
    val = [json.loads(ln) for ln in open(osp.join(vis, 'scalars.json'))
           if 'val/mIoU' in ln]
    assert scratch['mIoU'] == val[-1]['val/mIoU'] and val[-1]['step'] == 1
    dump = open(osp.join(vis, 'config.py')).read()
    assert 'labelled_points=40' in dump and 'label_seed=3' in dump
    assert (f'| none (spunet) | scratch | all scenes, 40 points/scene '
            f'| 3 | {100 * scratch["mIoU"]:.1f} |') in out
    # per-class IoU of every run, from its log's table (2 decimals)
    for x in result['runs']:
        assert len(x['class_iou']) == 20 and 'shower curtain' in \
            x['class_iou']
        known = [v for v in x['class_iou'].values() if v is not None]
        assert sum(known) / len(known) == pytest.approx(x['mIoU'], abs=1e-4)
    # a warning for each row at or below the majority class, none other
    majority = next(f['mIoU'] for f in result['floors']
                    if f['floor'] == 'majority')
    low = [x for x in result['transfer'] if x['mIoU'] <= majority]
    warned = [ln for ln in r.stdout.splitlines()
              if ln.startswith('warning:')]
    assert len(warned) == len(low) == len(result['warnings'])
    # again, in this process: every finished run is reused, not trained
    from tools.transfer import main
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    main(args)
    again = capsys.readouterr().out
    assert 'reusing' in again and '$ ' not in again
    assert json.loads(again.strip().splitlines()[-1]) == result


def test_auto_class_weight_and_lovasz_through_the_train_tool(demo_root,
                                                              tmp_path,
                                                              capsys):
    """A user config that asks for class_weight='auto' and a Lovász term:
    tools/train.py adds the hook, the weights are logged per class and
    saved, both terms are logged; a misspelt value stops in one line."""
    import torch
    child = tmp_path / 'seg_auto.py'
    child.write_text(
        f"_base_ = [{SEG_DEMO['scratch']!r}]\n"
        "model = dict(class_weight='auto', losses=[\n"
        "    dict(type='SegCrossEntropyLoss', loss_weight=1.0),\n"
        "    dict(type='LovaszSoftmaxLoss', loss_weight=1.0)])\n"
        'train_dataloader = dict(dataset=dict(labelled_points=100))\n')
    work = str(tmp_path / 'work')
    seg_opts = [f'data_root={demo_root}', *cfg_options(TINY_SEG_MODEL)]
    r, out = run(TRAIN, str(child), '--work-dir', work, '--cfg-options',
                 *seg_opts, 'train_cfg.max_epochs=1', 'train_cfg.val_begin=2',
                 'default_hooks.logger.interval=1')
    assert r.returncode == 0, out[-3000:]
    line = re.search(r"class_weight='auto' from 400 labelled training points"
                     r" .*: (wall [\d.]+ \([\d.]+%\), floor .*)", out)
    assert line, out[-3000:]
    # every class, named: with a weight, or among those without points
    present, _, absent = line.group(1).partition(
        '; weight 0 (no labelled point): ')
    absent = absent.split(', ') if absent else []
    assert len(present.split(', ')) + len(absent) == 20
    assert re.search(r'loss_ce: [\d.]+ +loss_lovasz: [\d.]+', out)
    state = torch.load(osp.join(work, 'epoch_1.pth'), map_location='cpu',
                       weights_only=False)['state_dict']
    weights = [float(w) for w in re.findall(r' ([\d.]+) \(', present)]
    saved = state['class_weight']
    assert saved[saved > 0].tolist() == pytest.approx(weights, abs=1e-3)
    assert int((saved == 0).sum()) == len(absent)

    from tools.train import main
    with pytest.raises(SystemExit):
        main([str(child), '--work-dir', str(tmp_path / 'bad'),
              '--cfg-options', *seg_opts, 'model.class_weight=autox'])
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: model.class_weight: got 'autox' (str); expected None, "
        "'auto' or a list of finite numbers >= 0 (one per class); 'auto' "
        'computes them from the training labels']
