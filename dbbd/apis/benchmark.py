"""Time one DBBD training step against the flat bound, and its peak memory.

A step is what the trainer does: two views, forward of both branches, the
loss, backward, AdamW step; at full dims (method defaults), depth 4,
branching 8, a batch of 2 scenes. ``--regions`` picks ``min_points_to_split``
so that the trees have about that many regions per scene (the actual number
is printed).

The *flat bound* applies the same layers (input and context projections,
propagator, encoder MLP, aggregator MLPs, heads, the InfoNCE losses) to the
same number of rows, one call per layer, with no tree: no gathers, no
segment pooling, no per-level calls; forward + backward + the same AdamW
step. ``step_s / flat_bound_s`` is the cost of walking the tree level by
level; the original region-by-region walk cost 11-50 s a step on this kind
of CPU (method section 6).

With ``--backbone spunet`` the model is DBBD on a SpUNet scene backbone
(full size, 2 cm voxels; the regions pool its features) and the bound
(``flat_bound_s``) is the backbone alone: SpUNet forward and backward on
both views, no tree, the same AdamW step. ``step_s / flat_bound_s - 1`` is
then what the tree adds to the backbone. ``--backbone ptv3`` is the same
with a Point Transformer V3 (full size: Pointcept's ScanNet settings, four
orders, patches of 1024 voxels, 2 cm). Several backbones (``--backbone
spunet ptv3``) run on the same scenes and trees, one table row each, which
compares the backbones: ``backbone_points_per_s`` (the batch's points over
the backbone-alone step) and ``backbone_peak_mem_gb``.

Each configuration runs in a fresh subprocess, so its peak resident memory
(``ru_maxrss`` of the whole process; on CUDA
``torch.cuda.max_memory_allocated``) is its own; it is read after the
warm-up steps of the model, before the flat bound first runs. With a scene
backbone the bound's warm-up steps run first and give
``backbone_peak_mem_gb``; the model's step, which runs the same backbone on
the same views and keeps more, then sets ``peak_mem_gb``. Then model
steps and flat-bound steps alternate (so that a change of load on the
machine hits both) and each time is the median of ``--steps``; the minima
are in the JSON too. On a CPU shared with other jobs the level-by-level
step suffers more than the flat bound (hundreds of mid-sized parallel ops,
each waiting for a descheduled thread), so measure on an idle machine.

``--malloc tuned`` (the default) runs the worker with glibc thresholds that
keep freed memory for reuse: with glibc's defaults every block above 32 MiB
goes back to the OS when freed and is faulted in again on the next step,
which costs the flat bound's few huge calls seconds of system time per step
and would make it no bound. ``--malloc default`` measures glibc as is.

Data: two synthetic rooms of ``--points`` points (``dbbd.datasets.synthetic``)
or ``--scene PATH``, a prepared scene folder used for both scenes of the
batch (its tree is rebuilt to reach the requested region count). The views
are random rotations about z, scalings and jitter of the same points;
features are the normals.

The functions behind ``tools/benchmark.py`` (its docstring has the
commands): :func:`run` the configurations of a command line, each in a
subprocess running :func:`worker`.
"""
import json
import os
import os.path as osp
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

__all__ = ['MODEL_CONFIGS', 'model_config',
           'flat_bound_step', 'backbone_bound_step', 'worker', 'run']

#: The full-size model of each ``--backbone``: the model base config the
#: training configs build on (``configs/_base_/models/``): DBBD with the
#: PointNet encoder (method defaults), and DBBD on a SpUNet or a Point
#: Transformer V3 scene backbone (2 cm voxels; the regions pool its
#: features, no per-region encoder on top).
MODEL_CONFIGS = dict(pointnet='dbbd_pointnet.py', spunet='dbbd_spunet.py',
                     ptv3='dbbd_ptv3.py')

_BASE_MODELS = osp.join(osp.dirname(osp.dirname(osp.dirname(
    osp.abspath(__file__)))), 'configs', '_base_', 'models')


def model_config(backbone):
    """The model config of ``--backbone`` (a plain dict)."""
    from mmengine.config import Config

    from dbbd.engine.hooks.checkpoint_hook import to_plain
    return to_plain(Config.fromfile(osp.join(
        _BASE_MODELS, MODEL_CONFIGS[backbone])).model)


def backbone_bound_step(model, data):
    """The bound of a scene-backbone step: the backbone alone, forward and
    backward of both views, no tree (its output's mean as the loss)."""
    features = model.backbone.point_features
    inputs = data['inputs']

    def step():
        return sum(features(inputs[v])['feat'].mean()
                   for v in ('view1', 'view2'))

    return step


# glibc returns every block above its mmap threshold (at most 32 MiB) to
# the OS when freed, so each step faults its large activations in afresh
# (seconds of system time for the flat bound's single big calls). These
# settings keep freed memory in the heap; they change no result.
MALLOC_TUNED = {'MALLOC_MMAP_THRESHOLD_': str(2**34),
                'MALLOC_TRIM_THRESHOLD_': str(2**34)}


def load_points(args):
    """Per scene of the batch: ``(coord (N, 3) float32, normal (N, 3))``."""
    if args.scene:
        from dbbd.datasets.scene_io import load_scene
        s = load_scene(args.scene)
        pts = (np.asarray(s['coord'], np.float32),
               np.asarray(s['normal'], np.float32))
        return [pts] * args.batch
    from dbbd.datasets.synthetic import make_room
    out = []
    for i in range(args.batch):
        r = make_room(num_points=args.points, seed=i)
        out.append((r['coord'].astype(np.float32), r['normal']))
    return out


def num_regions(coord, args, min_points):
    from dbbd.datasets.region_tree import build_region_tree
    tree, _ = build_region_tree(coord, args.branching, args.depth, min_points,
                                args.tree_seed)
    return int(tree.level_offset[-1])


def choose_min_points(scenes, args, target):
    """Bisect ``min_points_to_split`` (fewer regions as it grows)."""
    lo, hi = 2, max(len(c) for c, _ in scenes) + 1

    def mean_regions(m):
        return np.mean([num_regions(c, args, m) for c, _ in scenes])

    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mean_regions(mid) >= target:
            lo = mid
        else:
            hi = mid
    return min((lo, hi), key=lambda m: abs(mean_regions(m) - target))


def make_batch(scenes, args, min_points):
    from dbbd.datasets import build_region_tree, dbbd_collate
    rng = np.random.default_rng(0)
    samples = []
    for i, (coord, normal) in enumerate(scenes):
        tree, order = build_region_tree(coord, args.branching, args.depth,
                                        min_points, args.tree_seed)
        coord, normal = coord[order], normal[order]
        views = {}
        for v in ('view1', 'view2'):
            a = rng.uniform(0, 2 * np.pi)
            rot = np.array([[np.cos(a), -np.sin(a), 0],
                            [np.sin(a), np.cos(a), 0], [0, 0, 1]],
                           np.float32)
            s = rng.uniform(0.9, 1.1)
            views[v] = dict(
                coord=(coord @ rot.T * s + rng.normal(0, 0.005, coord.shape)
                       ).astype(np.float32),
                feat=(normal @ rot.T).astype(np.float32))
        samples.append(dict(
            scene_id=f'scene{i}', num_points=len(coord),
            point_region=tree.point_region, region_parent=tree.region_parent,
            region_center=tree.region_center, level_offset=tree.level_offset,
            segment=np.full(len(coord), -1), sample_seed=i, **views))
    return dbbd_collate(samples)


def timed(fn, sync):
    sync()
    t = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - t


def flat_bound_step(model, tree, device):
    """The model's layer arithmetic on the same row counts, without a tree:
    the backbone's (:meth:`~dbbd.models.backbones.DBBDTreeBackbone.flat_bound`)
    on stand-in region and point features, then the heads and the losses
    on them. Returns a function computing the loss.
    """
    import torch
    p = tree.num_points
    sizes = [lv.num_regions for lv in tree.levels]
    gen = torch.Generator().manual_seed(0)
    backbone = model.backbone.flat_bound(tree, device, gen)
    d = model.backbone.out_channels

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(device).requires_grad_(
            True)

    # pooled features that the heads and the next level read
    regions = rand(sum(sizes), d)
    points = rand(2 * p, d)
    order = torch.arange(p, device=device)
    crit = model.criterion

    def step():
        enc, child = backbone(regions)
        q = model.region_head(regions).split(sizes)
        k = model.region_head(torch.cat([regions[:sizes[0]], child])).split(
            sizes)
        losses = crit(list(q), list(k), points[:p], points[p:], order,
                      model.point_head)
        # the encoder's output gets a gradient, as pooling would give it
        return sum(v for k, v in losses.items() if 'loss' in k) + enc.mean()

    return step


def worker(args):
    """One configuration; prints one JSON line."""
    import torch
    from dbbd.registry import MODELS
    device = torch.device(args.device)
    scenes = load_points(args)
    batch = make_batch(scenes, args, args.min_points)

    cfg = model_config(args.backbone)
    cfg['backbone']['with_cp'] = args.with_cp
    scene = args.backbone != 'pointnet'
    if scene:
        cfg['backbone']['scene_backbone']['backend'] = args.sparse_backend
    model = MODELS.build(cfg).to(device)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    data = model.data_preprocessor(batch, True)
    tree = data['inputs']['tree']
    cuda = device.type == 'cuda'

    def sync():
        if cuda:
            torch.cuda.synchronize()

    def autocast():
        # bf16 autocast of the forward pass, as --amp trains on a GPU
        return torch.autocast(device.type, dtype=torch.bfloat16,
                              enabled=args.amp)

    def train_step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss, _ = model.parse_losses(model(**data, mode='loss'))
        loss.backward()
        opt.step()

    flat = backbone_bound_step(model, data) if scene \
        else flat_bound_step(model, tree, device)

    def flat_step():
        opt.zero_grad(set_to_none=True)
        with autocast():
            loss = flat()
        loss.backward()
        opt.step()

    def read_peak():
        if cuda:
            return torch.cuda.max_memory_allocated() / 2**30
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20

    # Peak memory first, from model steps alone (the flat bound's own
    # peak must not count); a scene backbone alone before them (the model
    # runs it and keeps more, so its peak stays the model's).
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    bound_peak = None
    if scene:
        for _ in range(args.warmup):
            flat_step()
        bound_peak = read_peak()
    for _ in range(args.warmup):
        train_step()
    peak = read_peak()
    if not scene:
        for _ in range(args.warmup):
            flat_step()
    # Alternate the two so that a load change on the machine hits both.
    step_t, flat_t = [], []
    for _ in range(args.steps):
        step_t.append(timed(train_step, sync))
        flat_t.append(timed(flat_step, sync))
    step_s, flat_s = statistics.median(step_t), statistics.median(flat_t)
    if args.profile:
        from torch.profiler import ProfilerActivity, profile
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA]
                                         if cuda else [])
        for name, fn in (('model step', train_step),
                         ('flat bound', flat_step)):
            with profile(activities=acts) as prof:
                fn()
            print(f'== {name}', file=sys.stderr)
            key = 'self_device_time_total' if cuda else 'self_cpu_time_total'
            print(prof.key_averages().table(sort_by=key, row_limit=30),
                  file=sys.stderr)
    rpl = tree.regions_per_level
    print(json.dumps(dict(
        step_s=round(step_s, 4), flat_bound_s=round(flat_s, 4),
        ratio=round(step_s / flat_s, 3), peak_mem_gb=round(peak, 3),
        points_per_s=round(tree.num_points / step_s),
        backbone_points_per_s=round(tree.num_points / flat_s) if scene
        else None,
        backbone_peak_mem_gb=None if bound_peak is None else round(
            bound_peak, 3),
        amp='bf16' if args.amp else None,
        step_min_s=round(min(step_t), 4), flat_bound_min_s=round(
            min(flat_t), 4),
        rss_before_gb=round(rss0 / 2**20, 3),
        regions_per_scene=round(sum(rpl) / args.batch, 1),
        regions_per_level=rpl, leaves=tree.num_leaves,
        points=round(tree.num_points / args.batch),
        batch_points=int(tree.num_points), batch=args.batch,
        min_points_to_split=args.min_points, max_depth=args.depth,
        backbone=args.backbone,
        device=str(device) if not cuda else torch.cuda.get_device_name(),
        threads=torch.get_num_threads(), with_cp=args.with_cp,
        malloc='tuned' if 'MALLOC_MMAP_THRESHOLD_' in os.environ else
        'default')))


def run(args, script):
    """All configurations of the command line, each in a fresh subprocess
    of ``script --worker``; prints the table, then the JSON line."""
    print(f'building {args.batch} scenes of {args.points} points and '
          'choosing tree sizes ...', flush=True)
    scenes = load_points(args)
    runs = []
    total = len(args.regions) * len(args.backbone)
    for target in args.regions:
        m = args.min_points_to_split or choose_min_points(scenes, args,
                                                          target)
        for backbone in args.backbone:
            cmd = [sys.executable, script, '--worker',
                   '--min-points', str(m), '--backbone', backbone]
            for key in ('points', 'scene', 'batch', 'depth', 'branching',
                        'tree_seed', 'device', 'steps', 'warmup',
                        'sparse_backend'):
                if getattr(args, key) is not None:
                    cmd += ['--' + key.replace('_', '-'),
                            str(getattr(args, key))]
            cmd += ['--with-cp'] * args.with_cp + ['--profile'] * args.profile
            cmd += ['--amp'] * args.amp
            print(f'[{len(runs) + 1}/{total}] {backbone}, {target} regions '
                  f'per scene (min_points_to_split={m}): {args.warmup} '
                  f'warm-up and {args.steps} timed steps of each kind ...',
                  flush=True)
            runs.append(run_worker(cmd, args, target))

    head = ('backbone', 'target', 'regions/scene', 'points/scene', 'step_s',
            'flat_bound_s', 'ratio', 'points/s', 'peak_mem_gb',
            'backbone points/s', 'backbone peak_mem_gb', 'device', 'malloc')
    print(' | '.join(head))
    print(' | '.join('---' for _ in head))
    for r in runs:
        print(' | '.join(str(x) for x in (
            r['backbone'], r['target_regions'], r['regions_per_scene'],
            r['points'], r['step_s'], r['flat_bound_s'], r['ratio'],
            r['points_per_s'], r['peak_mem_gb'],
            r['backbone_points_per_s'] or '-',
            r['backbone_peak_mem_gb'] or '-', r['device'], r['malloc'])))
    print(json.dumps(dict(runs[-1], runs=runs)))


def run_worker(cmd, args, target):
    """One configuration in a fresh subprocess; its JSON line."""
    env = os.environ.copy()
    if args.malloc == 'tuned':
        env.update(MALLOC_TUNED)
    res = subprocess.run(cmd, stdout=subprocess.PIPE, text=True, env=env)
    if res.returncode:
        sys.exit(f'benchmark worker ({cmd[cmd.index("--backbone") + 1]}, '
                 f'{target} regions) failed (exit {res.returncode})')
    out = json.loads(res.stdout.strip().splitlines()[-1])
    out['target_regions'] = target
    print(f'    step {out["step_s"]} s, flat bound {out["flat_bound_s"]} s, '
          f'peak {out["peak_mem_gb"]} GB', flush=True)
    return out
