#!/usr/bin/env python
"""The transfer table: does pre-training help segmentation?

For every seed and every pre-training config: pre-train (a tools/train.py
run), then the linear probe (a logistic regression fitted by L-BFGS on
the frozen backbone's point features, in this process) and a fine-tune
(a tools/train.py run from the checkpoint), with the same seed and
labelled subset; ``none`` stands for no pre-training: the same network
from scratch. A training run's score is its validation at the last epoch
(never the best: the validation split is the test split here). Beside
the tables, the floors of the same split and labelled points: the
majority class, a probe on the raw input features and a probe on the
untrained backbone; a row at or below the majority class gets a
``warning:`` line. Then each fine-tune against scratch, paired by seed
(the mean ± sample standard deviation of the per-seed mIoU differences,
on how many seeds the fine-tune is higher, and a ``note:`` line where the
difference is within its spread). The last line is JSON with every run
(per-class IoU included).

    # the demo rooms, a few CPU minutes
    python tools/transfer.py
    # label-efficient: 2 of the 4 demo rooms, 200 labelled points per room
    python tools/transfer.py --labelled-scenes 2 --labelled-points 200
    # ScanNet, small mode, three seeds
    python tools/transfer.py \\
        --pretrain-configs configs/dbbd/dbbd_small_scannet.py none \\
        --seg-configs configs/dbbd/seg_{family}_small_scannet_{protocol}.py \\
        --seeds 0 1 2 --work-dir work_dirs/transfer_small_scannet

Finished work is reused when the command is repeated (records keyed by
the configs' content, the options and the pre-training checkpoint's
SHA-256; see dbbd/apis/records.py): add seeds, configs or a label-efficient
setting and only the new work runs.
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

DEMO = osp.join('configs', 'dbbd')


def parse_args(argv=None):
    from mmengine.config import DictAction

    from dbbd.apis.probe import DEFAULT_MAX_TRAIN_POINTS
    p = argparse.ArgumentParser(
        description='Pre-train, then linear probe (fitted), fine-tune and '
        'train from scratch with the same seed and labels; print the table '
        'beside its floors.')
    p.add_argument(
        '--pretrain-configs', nargs='+', metavar='CONFIG',
        default=[osp.join(DEMO, 'dbbd_small_demo.py'), 'none'],
        help='pre-training configs, and/or "none" (scratch); each config '
        'gives a linear-probe and a fine-tune row, on the segmentation '
        'configs of its backbone family; rows follow this order')
    p.add_argument('--seeds', nargs='+', type=int, default=[0],
                   help='one run of everything per seed (randomness.seed '
                   'and label_seed); with several, "±" is the sample '
                   'standard deviation')
    p.add_argument(
        '--protocols', nargs='+', choices=['lin', 'ft', 'scratch'],
        default=['lin', 'ft', 'scratch'],
        help='which rows to run (default all): lin (fitted linear probe), '
        'ft (fine-tune), scratch (the rows of "none")')
    p.add_argument(
        '--seg-configs', metavar='TEMPLATE',
        help='one template for the three segmentation configs, {protocol} '
        'becoming lin, ft or scratch and {family} the backbone family, '
        'e.g. configs/scans/seg_{family}_scans_{protocol}.py; --lin, --ft '
        'and --scratch override it (default: '
        f'{osp.join(DEMO, "seg_{family}_small_demo_{protocol}.py")})')
    p.add_argument(
        '--lin', help='the config whose datasets and backbone the linear '
        'probe and the floors read ({family} becomes the pre-training\'s '
        'backbone family: pointnet, the tree\'s per-region PointNet; '
        'spunet, a SpUNet in DBBD\'s tree or alone; or ptv3, a Point '
        'Transformer V3 likewise); the table\'s linear '
        'probe is fitted by L-BFGS, not the config\'s SGD schedule (which '
        'tools/train.py still runs)')
    p.add_argument('--ft', help='fine-tune config ({family} as for --lin)')
    p.add_argument(
        '--scratch', help='from-scratch config, the row of "none" '
        '({family} as for --lin; "none" gives one row per family of the '
        'pre-training configs, "none:spunet" names one)')
    p.add_argument('--epochs', type=int,
                   help='epochs of every fine-tune and scratch run '
                   '(default: the configs\'); the cosine schedule is '
                   'stretched to match')
    p.add_argument('--pretrain-epochs', type=int,
                   help='epochs of pre-training (default: the config\'s)')
    group = p.add_mutually_exclusive_group()
    group.add_argument('--labelled-fraction', type=float,
                       help='train on this fraction of the scenes')
    group.add_argument('--labelled-scenes', type=int,
                       help='train on this many scenes')
    p.add_argument('--labelled-points', type=int,
                   help='labelled points kept per training scene')
    p.add_argument(
        '--probe-max-points', type=int, default=DEFAULT_MAX_TRAIN_POINTS,
        help='the linear probes are fitted on at most this many labelled '
        'training points (a uniform subset drawn with the seed; default '
        '%(default)s)')
    p.add_argument('--probe-steps', type=int, default=100,
                   help='L-BFGS iterations of the probes (%(default)s)')
    p.add_argument('--probe-balance', choices=('auto', 'none'),
                   default='auto',
                   help='auto: every probe (and floor) class-balanced with '
                   'the weights class_weight=\'auto\' gives fine-tuning '
                   '(ENet 1/ln(1.02 + f) of the labelled training points); '
                   'none: plain cross-entropy, which drifts to the majority '
                   'class on imbalanced data (%(default)s)')
    p.add_argument('--probe-device',
                   help='device of the probes\' feature extraction '
                   '(default: cuda when available, else cpu)')
    p.add_argument('--jobs', type=int, default=1, metavar='N',
                   help='runs at once (default 1): pre-trainings, '
                   'fine-tunes and scratch runs that do not wait on each '
                   'other run side by side, the probes in this process; '
                   'the table is the same. Give each run fewer threads '
                   '(OMP_NUM_THREADS) so N of them fit the cores')
    p.add_argument('--progress-interval', type=float, default=30.0,
                   help='seconds between the progress lines of a running '
                   'tools/train.py (%(default)s)')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'transfer'),
                   help='one folder per run below it')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='options of every run (pre-training and '
                   'segmentation), e.g. data_root=PATH or backbone widths')
    p.add_argument('--pretrain-cfg-options', nargs='+', action=DictAction,
                   default={}, help='options of the pre-training runs only')
    p.add_argument('--seg-cfg-options', nargs='+', action=DictAction,
                   default={}, help='options of the segmentation runs and '
                   'probes only')
    return p.parse_args(argv)


def spec_from_args(args):
    from dbbd.apis.transfer import TransferSpec
    return TransferSpec(
        pretrain_configs=list(args.pretrain_configs), seeds=list(args.seeds),
        lin=args.lin, ft=args.ft, scratch=args.scratch,
        seg_configs=args.seg_configs, protocols=list(args.protocols),
        epochs=args.epochs, pretrain_epochs=args.pretrain_epochs,
        labelled_fraction=args.labelled_fraction,
        labelled_scenes=args.labelled_scenes,
        labelled_points=args.labelled_points, work_dir=args.work_dir,
        cfg_options=dict(args.cfg_options),
        pretrain_cfg_options=dict(args.pretrain_cfg_options),
        seg_cfg_options=dict(args.seg_cfg_options),
        probe_max_points=args.probe_max_points,
        probe_steps=args.probe_steps, probe_device=args.probe_device,
        probe_balance=args.probe_balance,
        progress_interval=args.progress_interval, jobs=args.jobs)


def main(argv=None):
    args = parse_args(argv)
    from dbbd.apis.transfer import TransferError, run_transfer
    try:
        return run_transfer(spec_from_args(args))
    except TransferError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)


if __name__ == '__main__':
    main()
