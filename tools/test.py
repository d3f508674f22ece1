#!/usr/bin/env python
"""Evaluate a checkpoint on the config's test split (its val split when the
config has no test split), as mmengine's ``tools/test.py``.

    python tools/test.py configs/dbbd/seg_pointnet_small_demo_ft.py \\
        work_dirs/seg_pointnet_small_demo_ft/epoch_20.pth
    python tools/test.py CONFIG CHECKPOINT --out preds --show-dir pics --tta

A segmentation checkpoint gives mIoU, mAcc, allAcc and the per-class IoU
table, counted on every point of every scene. ``--out DIR`` writes
``DIR/<scene>.npy``, the predicted class id of every point (no pickle);
``--show-dir DIR`` a top-view PNG per scene (its labelled points), ground
truth beside prediction. ``--tta`` averages the logits of four z-rotations (0, 90, 180,
270 degrees; the config's ``tta_pipeline``). A pre-training config and its
checkpoint give that config's validation metrics (loss, linear probe).
"""
import argparse
import os
import os.path as osp
import sys

# OpenMP threads that spin while they wait slow a busy CPU several times
# (measured: 29 s against 4.2 s a pre-training step on a loaded 2-core
# machine) and cost nothing measurable on an idle one; set before torch
# is imported, inherited by the runs this starts. Export another value to
# override.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(
        description='Evaluate a checkpoint on the test (else val) split.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint of that config')
    parser.add_argument(
        '--work-dir', help='where the log goes (default: work_dirs/<config>)')
    parser.add_argument(
        '--out', metavar='DIR',
        help='write DIR/<scene>.npy: predicted class ids of every point')
    parser.add_argument(
        '--show-dir', metavar='DIR',
        help='write DIR/<scene>.png: top view, ground truth | prediction')
    parser.add_argument(
        '--tta', action='store_true',
        help='test-time augmentation: logits of 4 z-rotations averaged '
        '(the config\'s tta_pipeline)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config keys, as for tools/train.py (data_root=, '
        'feat_keys=, num_classes= included)')
    parser.add_argument(
        '--verbose', action='store_true',
        help="print mmengine's set-up dump (environment, config, hooks) on "
        'the console too; by default it goes to the log file only')
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
        help='job launcher for distributed testing')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _is_segmentation(cfg):
    from dbbd.models.segmentors import PointSegmentor
    from dbbd.registry import MODELS
    t = (cfg.get('model') or {}).get('type')
    cls = MODELS.get(t) if isinstance(t, str) else t
    return isinstance(cls, type) and issubclass(cls, PointSegmentor)


def check_checkpoint_fits(cfg, path, fail):
    """Refuse, in one line, a checkpoint of the other kind of config."""
    from dbbd.engine import CheckpointLoadError, load_checkpoint_safe
    from dbbd.engine.pretrained import checkpoint_kind, seg_configs_for
    if not osp.isfile(path):
        fail(f'checkpoint {path} does not exist')
    try:
        payload = load_checkpoint_safe(path)
    except CheckpointLoadError as e:
        fail(str(e))
    kind = checkpoint_kind(payload)
    if _is_segmentation(cfg) and kind in ('export', 'pretraining'):
        if kind == 'export':
            backbone = payload.get('backbone_cfg')
        else:
            model_cfg = (payload.get('meta') or {}).get('model_cfg') or {}
            backbone = model_cfg.get('backbone')
            if isinstance(backbone, dict) and 'in_channels' not in \
                    backbone and 'in_channels' in model_cfg:
                # a scene backbone takes the model's width (SceneContrast,
                # SelfDistill)
                backbone = dict(backbone,
                                in_channels=model_cfg['in_channels'])
        configs = seg_configs_for(backbone, osp.join(
            REPO_ROOT, 'configs', 'dbbd')) if backbone else []
        configs = [osp.relpath(c, REPO_ROOT) for c in configs]
        what = ('an exported encoder' if kind == 'export' else
                'a pre-training checkpoint')
        which = ' or '.join(configs) if configs else (
            'a segmentation config whose model.backbone is the '
            "checkpoint's (a child of configs/dbbd/seg_pointnet_scannet_ft."
            'py)')
        fail(f'{path} is {what}, not a segmentation checkpoint; make one '
             f'with `python tools/train.py {configs[0] if configs else "CONFIG"}'
             f' --cfg-options pretrained={path}` (fine-tuning; _lin for a '
             f'linear probe) and test what it writes; config: {which}')
    if not _is_segmentation(cfg) and kind == 'segmentation':
        fail(f'{path} is a segmentation checkpoint but the config\'s model '
             f'is {cfg.model.get("type")}; give the segmentation config it '
             'was trained with')


def tta_description(tta):
    """One line saying what ``--tta`` does with this ``tta_pipeline``."""
    views = next((t for t in tta if str(t.get('type', '')).split('.')[-1]
                  == 'MultiView'), None)
    if views is None:
        return '--tta: each scene scored with the config\'s tta_pipeline'
    rot = next((t for t in views.get('transforms') or []
                if str(t.get('type', '')).split('.')[-1] == 'ViewRotateZ'),
               None)
    how = (f', turned by {", ".join(f"{a:g}" for a in rot["angles"])} '
           'degrees about z' if rot and rot.get('angles') else '')
    return (f'--tta: each scene scored as the mean of the logits of '
            f'{views.get("num_views")} views{how} (the config\'s '
            'tta_pipeline)')


def prepare_test_cfg(cfg, args, fail):
    """Test split (else val), TTA pipeline, result hook, checkpoint."""
    import copy
    if not cfg.get('test_dataloader'):
        cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
        cfg.test_evaluator = copy.deepcopy(cfg.val_evaluator)
        cfg.test_cfg = dict(type='TestLoop')
    if args.tta:
        tta = cfg.get('tta_pipeline')
        if not tta:
            fail(f'--tta: {args.config} has no tta_pipeline (see '
                 'configs/_base_/datasets/scannet_seg.py)')
        tta = copy.deepcopy(list(tta))
        from dbbd.datasets.formatting import pipeline_feat_keys
        keys = pipeline_feat_keys(cfg.test_dataloader.dataset)
        for t in tta:  # the test loader's features (--cfg-options feat_keys)
            if keys is not None and str(t.get('type', '')).startswith('Pack'):
                t['feat_keys'] = keys
        cfg.test_dataloader = copy.deepcopy(cfg.test_dataloader)
        cfg.test_dataloader.dataset.pipeline = tta
    if args.out or args.show_dir:
        if not _is_segmentation(cfg):
            fail('--out and --show-dir write segmentation predictions; the '
                 f'config\'s model is {cfg.model.get("type")}')
        hooks = list(cfg.get('custom_hooks') or [])
        hooks.append(dict(type='SegResultsHook', out_dir=args.out,
                          show_dir=args.show_dir))
        cfg.custom_hooks = hooks
    cfg.load_from = args.checkpoint
    cfg.resume = False
    return cfg


def check_output_dir(option, path, fail):
    """``--out`` / ``--show-dir``: one line, before anything runs, when
    ``path`` cannot be the folder the predictions go to (a file, a path
    under a file, a folder that cannot be written); nothing is created."""
    full = osp.abspath(path)
    if osp.exists(full):
        if not osp.isdir(full):
            fail(f'{option} {path}: is a file, not a folder; give a folder '
                 '(it is created when missing)')
        if not os.access(full, os.W_OK | os.X_OK):
            fail(f'{option} {path}: the folder is not writable; give '
                 'another folder')
        return
    parent = full
    while not osp.exists(parent):
        parent = osp.dirname(parent)
    if not osp.isdir(parent):
        fail(f'{option} {path}: {parent} is a file, so no folder can be '
             'made under it; give another folder')
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(f'{option} {path}: cannot create it, {parent} is not '
             'writable; give another folder')


def summary_line(metrics):
    """``mIoU 45.67  mAcc 56.78  allAcc 78.90`` (percent), else every
    metric as it is."""
    keys = [k for k in ('mIoU', 'mAcc', 'allAcc') if k in metrics]
    if keys:
        return '  '.join(f'{k} {100 * float(metrics[k]):.2f}' for k in keys)
    return '  '.join(f'{k} {float(v):.4f}' for k, v in metrics.items()
                     if isinstance(v, (int, float)))


def main(argv=None):
    args = parse_args(argv)
    from tools.train import (build_config, fail, prepare_data,
                             say_where_the_setup_went)
    for option, path in (('--out', args.out), ('--show-dir', args.show_dir)):
        if path is not None:
            check_output_dir(option, path, fail)
    cfg = build_config(argparse.Namespace(
        config=args.config, work_dir=args.work_dir, resume=None, amp=False,
        cfg_options=args.cfg_options, launcher=args.launcher))

    import dbbd.engine  # noqa: F401  safe checkpoint loading, hooks
    check_checkpoint_fits(cfg, args.checkpoint, fail)
    cfg = prepare_test_cfg(cfg, args, fail)

    from dbbd.datasets.dbbd_dataset import DataPreparationError
    from dbbd.datasets.formatting import check_feat_width
    from dbbd.engine.distributed import setup_distributed
    from dbbd.apis.config import check_config
    from dbbd.utils.config_check import ConfigError
    try:
        check_config(cfg)
        check_feat_width(cfg)
    except (ConfigError, DataPreparationError, ValueError) as e:
        fail(str(e))
    prepare_data(cfg)
    setup_distributed(cfg)

    from dbbd.datasets.scene_io import SceneFormatError
    from dbbd.engine.checkpoint import CheckpointLoadError, is_disk_full
    from dbbd.engine.runner import (DBBDRunner, QuietDBBDRunner,
                                    disk_full_message, disk_full_stops)
    known = (ConfigError, DataPreparationError, SceneFormatError,
             CheckpointLoadError)
    try:
        with disk_full_stops():
            runner = (DBBDRunner if args.verbose else
                      QuietDBBDRunner).from_cfg(cfg)
            if not args.verbose:
                say_where_the_setup_went(runner)
            if args.tta:
                runner.logger.info(tta_description(
                    cfg.test_dataloader.dataset.pipeline))
            metrics = runner.test()
    except known as e:
        fail(str(e))
    except OSError as e:
        if not is_disk_full(e):
            raise
        fail(disk_full_message(e, cfg.work_dir))
    print(f'{osp.basename(args.checkpoint)}: {summary_line(metrics)}',
          flush=True)
    return metrics


if __name__ == '__main__':
    main()
