"""Time the per-scene preparation core on one core: PCA normals + depth-4
region tree of a 150,000-point synthetic room (target: under 2 s).

    python tools/bench_prepare.py [--points 150000] [--repeat 3]
"""
import argparse
import os
import sys

# one core: BLAS / OpenMP pools must be sized before numpy is imported
for var in ('OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'MKL_NUM_THREADS'):
    os.environ[var] = '1'
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import time  # noqa: E402

from dbbd.datasets.normals import compute_normals  # noqa: E402
from dbbd.datasets.region_tree import build_region_tree  # noqa: E402
from dbbd.datasets.synthetic import make_room  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--points', type=int, default=150_000)
    p.add_argument('--repeat', type=int, default=3)
    a = p.parse_args()
    if hasattr(os, 'sched_setaffinity'):  # pin to one core where possible
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    coord = make_room(a.points, seed=0)['coord']
    best = None
    for _ in range(a.repeat):
        t0 = time.perf_counter()
        # the order prepare_scene uses: tree, depth-first reorder, normals
        tree, order = build_region_tree(coord, branching=8, max_depth=4,
                                        min_points_to_split=64, seed=0)
        xyz = coord[order]
        t1 = time.perf_counter()
        compute_normals(xyz, k=16, workers=1)
        t2 = time.perf_counter()
        if best is None or t2 - t0 < best[0]:
            best = (t2 - t0, t1 - t0, t2 - t1)
    total, t_tree, t_norm = best
    print(f'{a.points:,} points, 1 core, best of {a.repeat}: '
          f'tree (depth 4, {int(tree.level_offset[-1])} regions) '
          f'{t_tree:.2f} s + PCA normals (k=16) {t_norm:.2f} s = '
          f'{total:.2f} s ({"under" if total < 2 else "OVER"} the 2 s '
          'target)')


if __name__ == '__main__':
    main()
