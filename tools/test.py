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


def main(argv=None):
    args = parse_args(argv)
    from dbbd.apis.errors import exit_on_error
    from dbbd.apis.test import check_output_dir, test
    from tools.train import build_config
    with exit_on_error():
        for option, path in (('--out', args.out),
                             ('--show-dir', args.show_dir)):
            if path is not None:
                check_output_dir(option, path)
    cfg = build_config(argparse.Namespace(
        config=args.config, work_dir=args.work_dir, resume=None, amp=False,
        cfg_options=args.cfg_options, launcher=args.launcher))
    with exit_on_error():
        return test(cfg, args.config, args.checkpoint, tta=args.tta,
                    out=args.out, show_dir=args.show_dir,
                    verbose=args.verbose)


if __name__ == '__main__':
    main()
