#!/usr/bin/env python
"""Train DBBD with mmengine's Runner.

    python tools/train.py configs/dbbd/dbbd_small_demo.py
    python tools/train.py CONFIG --work-dir work_dirs/x --resume
    python tools/train.py CONFIG --resume work_dirs/x/epoch_10.pth
    python tools/train.py CONFIG --cfg-options train_cfg.max_epochs=10
    python tools/train.py CONFIG --validate [CHECKPOINT]
"""
import argparse
import os

# OpenMP threads that spin while they wait slow a busy CPU several times
# (measured: 29 s against 4.2 s a pre-training step on a loaded 2-core
# machine) and cost nothing measurable on an idle one; set before torch
# is imported, inherited by the runs this starts. Export another value to
# override.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train a DBBD model.')
    parser.add_argument('config', help='config file (Python or YAML)')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go (default: work_dirs/<config>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        metavar='CHECKPOINT',
        help='resume: alone, from the latest checkpoint of the work dir; '
        'with a path, from that checkpoint')
    parser.add_argument(
        '--validate',
        nargs='?',
        const='',
        default=None,
        metavar='CHECKPOINT',
        help="run the config's validation once, no training: alone, of the "
        'initialised model; with a path, of that checkpoint\'s weights; the '
        'metrics end the output as one JSON line')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision (GPU): bf16 where supported, else fp16 with '
        'dynamic loss scaling')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. train_cfg.max_epochs=10; '
        'data_root=PATH sets the data root of both loaders; '
        "feat_keys=\"('normal','color')\" sets the point features of both "
        'loaders and the model\'s input width (\'intensity\' is 1 channel); '
        'num_classes=N sets the model, the metrics and the datasets, and '
        "class_names=\"['a','b',...]\" the names the metrics show "
        '(numbered class0.. when none fit); pretrained=PATH (segmentation '
        'configs) starts the backbone from a pre-training checkpoint or an '
        'exported encoder')
    parser.add_argument(
        '--verbose',
        action='store_true',
        help="print mmengine's set-up dump (environment, the whole config, "
        'the hook order) on the console too; by default it goes to the log '
        'file in the work dir only')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='job launcher for distributed training')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_config(args):
    """The config of ``args`` (see :func:`dbbd.apis.train.build_config`);
    a problem is one line on stderr and exit status 1."""
    from dbbd.apis.errors import exit_on_error
    from dbbd.apis.train import build_config as build
    with exit_on_error():
        return build(args.config, work_dir=args.work_dir, resume=args.resume,
                     amp=args.amp, cfg_options=args.cfg_options,
                     launcher=args.launcher)


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    from dbbd.apis.errors import exit_on_error
    from dbbd.apis.train import set_validation, train
    with exit_on_error():
        set_validation(cfg, args.validate, args.resume)
        train(cfg, validate=args.validate, verbose=args.verbose)


if __name__ == '__main__':
    main()
