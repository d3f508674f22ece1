"""Prepare scenes for DBBD: read an input layout, build region trees, write
prepared scene folders (docs/data_format.md).

    python tools/create_data.py --src data/scannet --out data/dbbd_scannet \\
        --splits data/scannet/splits --workers 8

A thin command line over :func:`dbbd.datasets.prepare.prepare_dataset`.
The summary names the optional fields kept (colour, intensity, normals from
the source, labels; a scene whose intensity is one value everywhere is
counted) and, once each, the source fields that are not read (e.g. a PLY's
``curvature`` and ``alpha``).
Exit code: 0 when every scene is prepared (or was already), 1 when any
scene failed, 2 on bad arguments.
"""
import argparse
import os
import sys

# run from a checkout without installing: the repo root is this file's parent
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dbbd.datasets.prepare import format_summary, prepare_dataset  # noqa: E402
from dbbd.datasets.readers import LAYOUTS  # noqa: E402


class _HelpWithDefaults(argparse.ArgumentDefaultsHelpFormatter):
    """Every optional argument shows its default; one whose help names it
    in words (``default: none``) keeps those words instead of ``None``."""

    def _get_help_string(self, action):
        if action.required or 'default:' in (action.help or ''):
            return action.help
        return super()._get_help_string(action)


def build_parser():
    p = argparse.ArgumentParser(
        description='Prepare scenes (region trees) for DBBD pre-training.',
        formatter_class=_HelpWithDefaults)
    p.add_argument('--src', required=True, help='input folder (required)')
    p.add_argument('--out', required=True, help='output root '
                   '(OUT/<split>/<scene_id>/) (required)')
    p.add_argument('--layout', default='auto', choices=('auto',) + LAYOUTS,
                   help='input layout; auto detects it')
    p.add_argument('--splits', default=None, help='folder with '
                   'scannetv2_{train,val,test}.txt (default: none; mmdet3d '
                   'uses SRC/meta_data when present)')
    p.add_argument('--val-ratio', type=float, default=None,
                   help='without split lists: fraction of scenes for val '
                   '(default: none, every scene goes to train)')
    p.add_argument('--workers', type=int, default=None,
                   help='processes (default: one per CPU; 0/1: in this '
                   'process)')
    p.add_argument('--voxel-size', type=float, default=None,
                   help='grid subsampling in metres (default: none, every '
                   'point is kept)')
    p.add_argument('--branching', type=int, default=8,
                   help='children per region split')
    p.add_argument('--max-depth', type=int, default=4,
                   help='deepest tree level')
    p.add_argument('--min-points-to-split', type=int, default=64,
                   help='a region with fewer points is a leaf')
    p.add_argument('--seed', type=int, default=0,
                   help='seed of the trees and of --val-ratio')
    p.add_argument('--mmdet3d-labels', default='nyu40',
                   choices=('nyu40', 'scannet20'),
                   help='what mmdet3d semantic_mask/*.bin holds (mmdet3d '
                   'writes NYU40 ids)')
    p.add_argument('--label-map', default=None, metavar='MAP',
                   help='files layout: how the label / segment ids of your '
                   'files become stored class ids: a JSON file '
                   '{"src": dst, ...} or SRC:DST pairs like 1:0,2:1,7:-1 '
                   '(-1: unlabelled); ids not listed become -1 and are '
                   'counted in the summary (default: none, the ids are '
                   'taken as ScanNet-20 ids: 0..19 kept, others -1)')
    p.add_argument('--ignore-label', type=int, nargs='+', default=[],
                   metavar='ID', help='files layout: ids that mean '
                   '"unlabelled" (stored as -1, not counted as unmapped; '
                   'default: none)')
    p.add_argument('--overwrite', action='store_true',
                   help='re-prepare scenes already prepared')
    p.add_argument('--no-progress', action='store_true',
                   help='no progress line per scene')
    return p


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None):
    a = parse_args(argv)
    try:
        summary = prepare_dataset(
            a.src, a.out, layout=a.layout, splits=a.splits,
            val_ratio=a.val_ratio, workers=a.workers,
            voxel_size=a.voxel_size, branching=a.branching,
            max_depth=a.max_depth, min_points_to_split=a.min_points_to_split,
            seed=a.seed, overwrite=a.overwrite, progress=not a.no_progress,
            mmdet3d_label_ids=a.mmdet3d_labels, label_map=a.label_map,
            ignore_labels=a.ignore_label)
    except ValueError as e:  # nothing to prepare: bad source, layout, splits
        print(f'error: {e}', file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 1 if summary['failed'] else 0


if __name__ == '__main__':
    sys.exit(main())
