"""Time SpUNet forward + backward on CPU, torch backend against spconv.

The same SpUNet (same weights, training mode) runs on each backend over a
batch of synthetic rooms, voxelised inside; each timed repetition is one
forward pass and one backward pass of ``out.square().mean()``, the
backends taking turns (so that a change of load on the machine hits both).
Prints progress, a table (median and best of the repetitions, seconds) and
one JSON line. The full default size is Pointcept's SpUNet-v1m1.

``--malloc tuned`` (the default) runs with glibc keeping freed memory for
reuse (``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``), as
tools/benchmark.py does; ``--malloc default`` measures glibc as is.

``--omp-wait passive`` (the default) runs with ``OMP_WAIT_POLICY=PASSIVE``:
OpenMP threads that wait sleep instead of spinning. A step makes about
11,000 parallel calls (matrix products, gathers, scatters); on a CPU shared
with other jobs, spinning threads take the core the thread they wait for
needs. Measured at load average 4 on this project's 2-core machine, 2
threads, 2 rooms of 20,000 points: 45-56 s per step spinning, 10-11 s
passive, 8.5-9 s with ``--threads 1``. ``--omp-wait default`` measures the
OpenMP runtime as is.

    python tools/bench_sparse.py [--points 40000] [--scenes 2] \\
        [--voxel-size 0.02] [--backends torch spconv] [--repeat 3]
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from dbbd.datasets.synthetic import make_room  # noqa: E402
from dbbd.models.backbones import SpUNet  # noqa: E402
from dbbd.models.sparse import (set_backend, spconv_available,  # noqa: E402
                                voxelize)


def _batch(num_points, num_scenes, seed):
    """coord (P, 3), feat (P, 6) = colour / 255 and normal, offset."""
    coords, feats = [], []
    for s in range(num_scenes):
        room = make_room(num_points, seed=(seed, s))
        coords.append(torch.from_numpy(room['coord']).float())
        feats.append(torch.cat([
            torch.from_numpy(room['color']).float() / 255,
            torch.from_numpy(room['normal']).float()], 1))
    offset = torch.arange(num_scenes + 1) * num_points
    return torch.cat(coords), torch.cat(feats), offset


def _step(model, coord, feat, offset):
    t0 = time.perf_counter()
    out = model(coord, feat, offset)
    t1 = time.perf_counter()
    out.square().mean().backward()
    t2 = time.perf_counter()
    return out.detach(), t1 - t0, t2 - t1


def main():
    p = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--points', type=int, default=40_000,
                   help='points per scene')
    p.add_argument('--scenes', type=int, default=2, help='scenes per batch')
    p.add_argument('--voxel-size', type=float, default=0.02,
                   help='voxel edge (m)')
    p.add_argument('--backends', nargs='+', default=['torch', 'spconv'],
                   choices=['torch', 'spconv'])
    p.add_argument('--repeat', type=int, default=3,
                   help='timed repetitions per backend')
    p.add_argument('--warmup', type=int, default=1,
                   help='untimed repetitions per backend first')
    p.add_argument('--threads', type=int, default=None,
                   help='torch threads; None: torch\'s own choice')
    p.add_argument('--seed', type=int, default=0, help='room seed')
    p.add_argument('--malloc', choices=['tuned', 'default'], default='tuned',
                   help='tuned: glibc keeps freed memory for reuse instead '
                   'of returning big blocks to the OS and faulting them in '
                   'again on every step; default: glibc as is')
    p.add_argument('--omp-wait', choices=['passive', 'default'],
                   default='passive',
                   help='passive: OMP_WAIT_POLICY=PASSIVE, waiting OpenMP '
                   'threads sleep instead of spinning (much faster on a '
                   'shared CPU); default: the OpenMP runtime as is')
    a = p.parse_args()
    env = {}
    if a.malloc == 'tuned':
        env.update(MALLOC_MMAP_THRESHOLD_=str(2 ** 34),
                   MALLOC_TRIM_THRESHOLD_=str(2 ** 34))
    if a.omp_wait == 'passive':
        env.update(OMP_WAIT_POLICY='PASSIVE')
    if any(os.environ.get(k) != v for k, v in env.items()):
        # glibc and OpenMP read these at start-up: run again with them set
        os.execve(sys.executable, [sys.executable] + sys.argv,
                  dict(os.environ, **env))
    if a.threads:
        torch.set_num_threads(a.threads)
    backends = list(a.backends)
    skipped = {}
    if 'spconv' in backends and not spconv_available():
        backends.remove('spconv')
        skipped['spconv'] = 'not installed (pip install spconv)'
        print('spconv is not installed (pip install spconv): timing the '
              'torch backend only', flush=True)

    torch.manual_seed(a.seed)
    coord, feat, offset = _batch(a.points, a.scenes, a.seed)
    voxels, _ = voxelize(coord, feat, offset, a.voxel_size)
    model = SpUNet(in_channels=feat.shape[1], voxel_size=a.voxel_size)
    model.train()
    params = sum(p.numel() for p in model.parameters())
    print(f'SpUNet {params / 1e6:.1f} M parameters; {a.scenes} scenes x '
          f'{a.points:,} points -> {len(voxels.voxels):,} voxels of '
          f'{a.voxel_size * 100:g} cm; {torch.get_num_threads()} threads',
          flush=True)

    times = {b: ([], []) for b in backends}
    outputs = {}
    for i in range(a.warmup + a.repeat):
        timed = i >= a.warmup
        for backend in backends:
            set_backend(model, backend)
            model.zero_grad(set_to_none=True)
            out, tf, tb = _step(model, coord, feat, offset)
            outputs.setdefault(backend, out)
            if timed:
                times[backend][0].append(tf)
                times[backend][1].append(tb)
            print(f'  {backend:6s} {"run" if timed else "warm-up"} '
                  f'{i + 1 - a.warmup if timed else i + 1}: forward '
                  f'{tf:.2f} s, backward {tb:.2f} s', flush=True)
    results = {}
    for backend, (fwd, bwd) in times.items():
        total = [f + b for f, b in zip(fwd, bwd)]
        results[backend] = dict(
            forward_s=round(statistics.median(fwd), 3),
            backward_s=round(statistics.median(bwd), 3),
            total_s=round(statistics.median(total), 3),
            best_total_s=round(min(total), 3))

    diff = None
    if len(outputs) == 2:
        a_out, b_out = outputs.values()
        diff = float((a_out - b_out).abs().max())
    print()
    print('| backend | forward (s) | backward (s) | forward + backward (s) '
          '| best (s) |')
    print('| --- | --- | --- | --- | --- |')
    for backend, r in results.items():
        print(f'| {backend} | {r["forward_s"]:.2f} | {r["backward_s"]:.2f} | '
              f'{r["total_s"]:.2f} | {r["best_total_s"]:.2f} |')
    if 'torch' in results and 'spconv' in results:
        ratio = results['torch']['total_s'] / results['spconv']['total_s']
        print(f'\ntorch / spconv time: {ratio:.2f}; largest output '
              f'difference between backends: {diff:.2e}')
    print(json.dumps(dict(
        benchmark='spunet_forward_backward', points=a.points,
        scenes=a.scenes, voxel_size=a.voxel_size,
        voxels=len(voxels.voxels), parameters=params,
        threads=torch.get_num_threads(), repeat=a.repeat,
        torch=torch.__version__, cpu=platform.processor() or
        platform.machine(), load_average=[round(x, 2) for x in
                                          os.getloadavg()],
        malloc=a.malloc, omp_wait=a.omp_wait, results=results,
        skipped=skipped,
        max_output_diff=diff)))


if __name__ == '__main__':
    main()
