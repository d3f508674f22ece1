"""Time one DBBD training step against the flat bound, and its peak memory.

A step is what the trainer does (two views, both branches, the loss,
backward, AdamW step); the *flat bound* applies the same layers to the same
number of rows with no tree. With a scene backbone (``--backbone spunet
ptv3``) the bound is the backbone alone. Each configuration runs in a fresh
subprocess; see :mod:`dbbd.apis.benchmark` for what is measured and how.

    python tools/benchmark.py --regions 600 1500 2700
    python tools/benchmark.py --device cuda --regions 2700 [--amp]
    python tools/benchmark.py --backbone spunet --regions 2700
    python tools/benchmark.py --backbone spunet ptv3 --regions 2700

Prints a table, then one JSON line: the last configuration's numbers at the
top level, and every configuration under ``runs``.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from dbbd.apis.benchmark import MODEL_CONFIGS, run, worker  # noqa: E402


def parse_args(argv=None):
    ap = argparse.ArgumentParser(
        description=__doc__.split('\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument('--regions', type=int, nargs='+', default=[2700],
                    help='target regions per scene, one run each')
    ap.add_argument('--points', type=int, default=40000,
                    help='points per synthetic scene')
    ap.add_argument('--scene', help='prepared scene folder (instead of '
                    'synthetic rooms)')
    ap.add_argument('--batch', type=int, default=2, help='scenes per batch')
    ap.add_argument('--depth', type=int, default=4, help='max_depth')
    ap.add_argument('--branching', type=int, default=8,
                    help='children per region')
    ap.add_argument('--tree-seed', type=int, default=0,
                    help='seed of the trees\' FPS')
    ap.add_argument('--device', default='cpu', help='cpu or cuda')
    ap.add_argument('--backbone', choices=sorted(MODEL_CONFIGS),
                    nargs='+', default=['pointnet'],
                    help='pointnet: the per-region PointNet tree, against '
                    'the flat bound; spunet / ptv3: the tree on a SpUNet / '
                    'Point Transformer V3 scene backbone, against the '
                    'backbone alone; several: one run each on the same '
                    'scenes')
    ap.add_argument('--sparse-backend', choices=['torch', 'spconv', 'auto'],
                    default='torch',
                    help='SpUNet convolutions, PTv3 stem and xCPE')
    ap.add_argument('--amp', action='store_true',
                    help='bf16 autocast of the forward passes (as --amp '
                    'trains)')
    ap.add_argument('--steps', type=int, default=5, help='timed steps')
    ap.add_argument('--warmup', type=int, default=2,
                    help='untimed steps of each kind; the peak memory is '
                    'read after the model\'s')
    ap.add_argument('--with-cp', action='store_true',
                    help='gradient checkpointing of the per-level calls')
    ap.add_argument('--malloc', choices=['tuned', 'default'],
                    default='tuned', help='tuned: glibc keeps freed memory '
                    'for reuse (MALLOC_MMAP/TRIM_THRESHOLD_) instead of '
                    'returning big blocks to the OS and faulting them in '
                    'again on every step; default: glibc as is')
    ap.add_argument('--profile', action='store_true',
                    help='print a torch.profiler table of one step')
    ap.add_argument('--min-points-to-split', type=int,
                    help='use this min_points_to_split instead of choosing '
                    'it for --regions (skips the search)')
    ap.add_argument('--worker', action='store_true', help=argparse.SUPPRESS)
    ap.add_argument('--min-points', type=int, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        (args.backbone, ) = args.backbone
        return worker(args)
    run(args, script=osp.abspath(__file__))


if __name__ == '__main__':
    main()
