#!/usr/bin/env python
"""The transfer table: does pre-training help segmentation?

For every seed and every pre-training config: pre-train, then train the
segmentation configs from the result, a linear probe (frozen backbone) and
a fine-tune, with the same epochs, seed and labelled subset; ``none``
stands for no pre-training: the same network from scratch. Each run is a
real ``tools/train.py`` process; the score of a run is its validation at
the last epoch (never the best epoch: the validation split is the test
split here). Prints a table (mean and spread over seeds) and, last, one
JSON line with every run.

    # the demo rooms, a few CPU minutes
    python tools/transfer.py
    # label-efficient: 2 of the 4 demo rooms, 200 labelled points per room
    python tools/transfer.py --labelled-scenes 2 --labelled-points 200
    # ScanNet, small mode, three seeds
    python tools/transfer.py \\
        --pretrain-configs configs/dbbd/dbbd_small_scannet.py none \\
        --lin configs/dbbd/seg_pointnet_small_scannet_lin.py \\
        --ft configs/dbbd/seg_pointnet_small_scannet_ft.py \\
        --scratch configs/dbbd/seg_pointnet_small_scannet_scratch.py \\
        --seeds 0 1 2 --work-dir work_dirs/transfer_small_scannet

A finished run (its ``transfer_run.json`` in its work dir, for the same
options) is reused when the command is repeated: add seeds, configs or a
label-efficient setting and only the new runs train (pre-training
included).
"""
import argparse
import json
import math
import os
import os.path as osp
import subprocess
import sys
import time

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

TRAIN = osp.join(REPO_ROOT, 'tools', 'train.py')
DEMO = osp.join('configs', 'dbbd')
PROTOCOLS = dict(lin='linear probe', ft='fine-tune', scratch='scratch')
METRICS = ('mIoU', 'mAcc', 'allAcc')


def parse_args(argv=None):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser(
        description='Pre-train, then linear probe, fine-tune and train from '
        'scratch with the same budget, seed and labels; print the table.')
    p.add_argument(
        '--pretrain-configs', nargs='+', metavar='CONFIG',
        default=[osp.join(DEMO, 'dbbd_small_demo.py'), 'none'],
        help='pre-training configs, and/or "none" (scratch); each config '
        'gives a linear-probe and a fine-tune row, on the segmentation '
        'configs of its backbone family')
    p.add_argument('--seeds', nargs='+', type=int, default=[0],
                   help='one run of everything per seed (randomness.seed '
                   'and label_seed)')
    p.add_argument('--lin', default=osp.join(
        DEMO, 'seg_{family}_small_demo_lin.py'),
        help='linear-probe config; {family} becomes the pre-training\'s '
        'backbone family: pointnet (the tree\'s per-region PointNet) or '
        'spunet (a SpUNet, in DBBD\'s tree or alone)')
    p.add_argument('--ft', default=osp.join(
        DEMO, 'seg_{family}_small_demo_ft.py'),
        help='fine-tune config ({family} as for --lin)')
    p.add_argument('--scratch', default=osp.join(
        DEMO, 'seg_{family}_small_demo_scratch.py'),
        help='from-scratch config, the row of "none" ({family} as for '
        '--lin; "none" gives one row per family of the pre-training '
        'configs, "none:spunet" names one)')
    p.add_argument('--epochs', type=int,
                   help='epochs of every segmentation run (default: the '
                   'configs\'); the cosine schedule is stretched to match')
    p.add_argument('--pretrain-epochs', type=int,
                   help='epochs of pre-training (default: the config\'s)')
    group = p.add_mutually_exclusive_group()
    group.add_argument('--labelled-fraction', type=float,
                       help='train on this fraction of the scenes')
    group.add_argument('--labelled-scenes', type=int,
                       help='train on this many scenes')
    p.add_argument('--labelled-points', type=int,
                   help='labelled points kept per training scene')
    p.add_argument('--work-dir', default=osp.join('work_dirs', 'transfer'),
                   help='one folder per run below it')
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                   help='options of every run (pre-training and '
                   'segmentation), e.g. data_root=PATH or backbone widths')
    p.add_argument('--pretrain-cfg-options', nargs='+', action=DictAction,
                   default={}, help='options of the pre-training runs only')
    p.add_argument('--seg-cfg-options', nargs='+', action=DictAction,
                   default={}, help='options of the segmentation runs only')
    return p.parse_args(argv)


def fail(msg):
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(1)


def _name(config):
    return osp.splitext(osp.basename(config))[0]


def _opt(key, value):
    """One ``--cfg-options`` word: DictAction reads back what ``str``
    writes of numbers, None, lists and tuples."""
    return f'{key}={value}'


def epoch_options(config, epochs, opts):
    """Options that make ``config`` train ``epochs`` epochs, its epoch-based
    schedulers ending with it."""
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(opts))
    old = cfg.train_cfg.get('max_epochs')
    out = {'train_cfg.max_epochs': epochs}
    scheds = cfg.get('param_scheduler') or []
    for i, s in enumerate(scheds if isinstance(scheds, list) else [scheds]):
        for key in ('end', 'T_max'):
            if s.get(key) == old:
                out[f'param_scheduler.{i}.{key}'] = epochs
    return out


def label_options(args, seed):
    out = {'train_dataloader.dataset.label_seed': seed}
    if args.labelled_fraction is not None:
        out['train_dataloader.dataset.labelled_fraction'] = \
            args.labelled_fraction
    if args.labelled_scenes is not None:
        out['train_dataloader.dataset.labelled_scenes'] = args.labelled_scenes
    if args.labelled_points is not None:
        out['train_dataloader.dataset.labelled_points'] = args.labelled_points
    return out


def labelled_tag(args):
    """Suffix of the run folders of a label-efficient setting ('' for all
    labels), so settings do not overwrite each other's runs."""
    tag = ''
    if args.labelled_fraction is not None:
        tag += f'_f{args.labelled_fraction:g}'
    if args.labelled_scenes is not None:
        tag += f'_s{args.labelled_scenes}'
    if args.labelled_points is not None:
        tag += f'_p{args.labelled_points}'
    return tag


def labelled_text(args):
    scenes = ('all scenes' if args.labelled_fraction is None and
              args.labelled_scenes is None else
              f'{100 * args.labelled_fraction:g}% of scenes'
              if args.labelled_fraction is not None else
              f'{args.labelled_scenes} scenes')
    points = ('all points' if args.labelled_points is None else
              f'{args.labelled_points} points/scene')
    return f'{scenes}, {points}'


def run_train(config, work_dir, opts, log):
    """``tools/train.py config`` in a subprocess; its output to ``log``.
    Returns its wall time in seconds."""
    os.makedirs(work_dir, exist_ok=True)
    start = time.perf_counter()
    cmd = [sys.executable, TRAIN, config, '--work-dir', work_dir]
    if opts:
        cmd += ['--cfg-options'] + [_opt(k, v) for k, v in opts.items()]
    print(f'  $ {" ".join(cmd[1:])}', flush=True)
    with open(log, 'w') as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT,
                           env=dict(os.environ, PYTHONUNBUFFERED='1'))
    if r.returncode != 0:
        with open(log) as f:
            lines = [ln for ln in f.read().strip().splitlines() if ln]
        fail(f'{config} failed (log {log}): '
             f'{lines[-1] if lines else "no output"}')
    return time.perf_counter() - start


def final_val(work_dir, max_epochs):
    """The validation metrics of the last epoch, from the run's
    ``vis_data/scalars.json`` (mmengine's LocalVisBackend)."""
    stamps = sorted(d for d in os.listdir(work_dir)
                    if osp.isfile(osp.join(work_dir, d, 'vis_data',
                                           'scalars.json')))
    if not stamps:
        fail(f'{work_dir}: no vis_data/scalars.json (LocalVisBackend off?)')
    path = osp.join(work_dir, stamps[-1], 'vis_data', 'scalars.json')
    last = None
    with open(path) as f:
        for line in f:
            rec = json.loads(line)
            if 'val/mIoU' in rec:
                last = rec
    if last is None or last.get('step') != max_epochs:
        fail(f'{path}: no validation at the last epoch ({max_epochs})')
    return {k: float(last[f'val/{k}']) for k in METRICS}


def _max_epochs(config, opts):
    from mmengine.config import Config
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(opts))
    return int(cfg.train_cfg.max_epochs)


def _types(obj):
    if isinstance(obj, dict):
        yield obj.get('type')
        for v in obj.values():
            yield from _types(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _types(v)


def _model(config, opts):
    from mmengine.config import Config

    from dbbd.engine.hooks.checkpoint_hook import to_plain
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(dict(opts))
    return to_plain(cfg.get('model') or {})


def backbone_family(config, opts):
    """'spunet' when the model's backbone is, or holds, a SpUNet; else
    'pointnet'."""
    return 'spunet' if 'SpUNet' in set(_types(
        _model(config, opts).get('backbone'))) else 'pointnet'


def seg_config(template, family):
    return template.format(family=family)


def check_backbones(pretrain, seg, common, pre_opts, seg_opts):
    """The pre-training backbone (or the scene backbone inside DBBD's tree)
    must be the one the segmentation configs build, or its weights cannot
    load."""
    def plain(backbone):
        backbone = dict(backbone or {})
        backbone.pop('in_channels', None)  # filled in from the features
        return backbone

    pre = _model(pretrain, dict(common, **pre_opts)).get('backbone') or {}
    want = plain(_model(seg, dict(common, **seg_opts)).get('backbone'))
    if want not in (plain(pre), plain(pre.get('scene_backbone'))):
        fail(f'the backbone of {pretrain} differs from that of {seg}: the '
             'pre-trained weights would not load; pass --lin/--ft configs '
             'of the same size (e.g. the small-mode ones for a small-mode '
             'pre-training)')


def one_run(label, config, work_dir, opts, max_epochs):
    """Train (or reuse) one segmentation run; its metrics."""
    record = osp.join(work_dir, 'transfer_run.json')
    cmd_key = dict(config=config, opts={k: str(v) for k, v in opts.items()})
    if osp.isfile(record):
        with open(record) as f:
            old = json.load(f)
        if old.get('run') == cmd_key:
            print(f'  {label}: reusing {record}', flush=True)
            return old['metrics']
    seconds = run_train(config, work_dir, opts,
                        osp.join(work_dir, 'train.log'))
    metrics = final_val(work_dir, max_epochs)
    metrics['seconds'] = round(seconds, 1)
    from dbbd.engine.checkpoint import atomic_write_text
    atomic_write_text(record, json.dumps(dict(run=cmd_key, metrics=metrics)))
    print(f'  {label}: ' + '  '.join(f'{k} {100 * metrics[k]:.2f}'
                                    for k in METRICS), flush=True)
    return metrics


def pretrain(config, seed, args):
    """Pre-train (or reuse) and return the last checkpoint (an early stop
    of the pre-training config ends it before its last epoch)."""
    from dbbd.engine import find_latest_checkpoint
    work = osp.join(args.work_dir, _name(config), f'seed{seed}', 'pretrain')
    opts = dict(args.cfg_options, **args.pretrain_cfg_options)
    opts['randomness.seed'] = seed
    if args.pretrain_epochs:
        opts.update(epoch_options(config, args.pretrain_epochs, opts))
    max_epochs = _max_epochs(config, opts)
    done = osp.join(work, 'transfer_pretrain.json')
    key = dict(config=config, opts={k: str(v) for k, v in opts.items()})
    if osp.isfile(done):
        with open(done) as f:
            old = json.load(f)
        if old.get('run') == key and osp.isfile(old.get('checkpoint', '')):
            print(f'  pre-training: reusing {old["checkpoint"]}', flush=True)
            return old['checkpoint'], old.get('seconds')
    seconds = run_train(config, work, opts, osp.join(work, 'train.log'))
    ckpt = find_latest_checkpoint(work)
    if ckpt is None or not osp.isfile(ckpt):
        fail(f'{work}: no checkpoint after pre-training')
    if not ckpt.endswith(f'epoch_{max_epochs}.pth'):  # early stopping
        print(f'  pre-training stopped before epoch {max_epochs}: using '
              f'{osp.basename(ckpt)}', flush=True)
    from dbbd.engine.checkpoint import atomic_write_text
    atomic_write_text(done, json.dumps(dict(run=key, checkpoint=ckpt,
                                            seconds=round(seconds, 1))))
    return ckpt, round(seconds, 1)


def aggregate(runs):
    """Mean and (population) standard deviation over seeds per row."""
    rows = {}
    for r in runs:
        rows.setdefault((r['pretrain'], r['protocol']), []).append(r)
    out = []
    for (pre, protocol), rs in rows.items():
        row = dict(pretrain=pre, protocol=protocol,
                   seeds=[r['seed'] for r in rs], labelled=rs[0]['labelled'])
        for k in METRICS:
            vals = [r[k] for r in rs]
            mean = sum(vals) / len(vals)
            row[k] = mean
            row[f'{k}_std'] = math.sqrt(sum((v - mean) ** 2 for v in vals)
                                        / len(vals))
        out.append(row)
    return out


def format_table(rows):
    """Markdown table, values in percent (mean ± std over seeds)."""
    lines = ['| pre-training | protocol | labelled | seeds | mIoU | mAcc | '
             'allAcc |', '|---|---|---|---|---|---|---|']
    for r in rows:
        def cell(k):
            s = f'{100 * r[k]:.1f}'
            return s + (f' ± {100 * r[k + "_std"]:.1f}'
                        if len(r['seeds']) > 1 else '')
        lines.append(f'| {r["pretrain"]} | {r["protocol"]} | '
                     f'{r["labelled"]} | {",".join(map(str, r["seeds"]))} | '
                     f'{cell("mIoU")} | {cell("mAcc")} | {cell("allAcc")} |')
    return '\n'.join(lines)


def plan(args):
    """``[(row name, pre-training config or None, family)]``: one entry
    per pre-training config (its backbone's family), and for ``none`` one
    scratch row per family present (``none:FAMILY`` names one)."""
    entries, families = [], []
    for entry in args.pretrain_configs:
        if entry.split(':')[0] == 'none':
            continue
        if not osp.isfile(entry):
            fail(f'config {entry} does not exist')
        family = backbone_family(entry, dict(args.cfg_options,
                                             **args.pretrain_cfg_options))
        entries.append((_name(entry), entry, family))
        families.append(family)
    for entry in args.pretrain_configs:
        name, _, family = entry.partition(':')
        if name != 'none':
            continue
        if family and family not in ('pointnet', 'spunet'):
            fail(f'--pretrain-configs {entry}: use none, none:pointnet or '
                 'none:spunet')
        for fam in [family] if family else sorted(
                set(families)) or ['pointnet']:
            entries.append((f'none ({fam})', None, fam))
    return entries


def summary(rows, runs, pretrain_seconds):
    """The transfer table of a comparison: one row per pre-training, its
    linear-probe and fine-tune (or scratch) mIoU, the pre-training and the
    fine-tuning time (means over seeds)."""
    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else None

    def fmt(r):
        if r is None:
            return '-'
        s = f'{100 * r["mIoU"]:.1f}'
        return s + (f' ± {100 * r["mIoU_std"]:.1f}'
                    if len(r['seeds']) > 1 else '')

    lines = ['| pre-training | linear probe mIoU | fine-tune mIoU | '
             'pre-training time | fine-tune time |', '|---|---|---|---|---|']
    for pre in dict.fromkeys(r['pretrain'] for r in rows):
        by = {r['protocol']: r for r in rows if r['pretrain'] == pre}
        ft = by.get(PROTOCOLS['ft']) or by.get(PROTOCOLS['scratch'])
        ft_time = mean([r.get('seconds') for r in runs if r['pretrain'] ==
                        pre and r['protocol'] != PROTOCOLS['lin']])
        pre_time = mean(pretrain_seconds.get(pre, []))
        lines.append(
            f'| {pre} | {fmt(by.get(PROTOCOLS["lin"]))} | {fmt(ft)} | '
            f'{"-" if pre_time is None else f"{pre_time:.0f} s"} | '
            f'{"-" if ft_time is None else f"{ft_time:.0f} s"} |')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    entries = plan(args)
    for _, config, family in entries:
        todo = ['scratch'] if config is None else ['lin', 'ft']
        for protocol in todo:
            seg = seg_config(getattr(args, protocol), family)
            if not osp.isfile(seg):
                fail(f'config {seg} does not exist')
        if config is not None:
            check_backbones(config, seg_config(args.ft, family),
                            args.cfg_options, args.pretrain_cfg_options,
                            args.seg_cfg_options)
    seg_common = dict(args.cfg_options, **args.seg_cfg_options)
    labelled = labelled_text(args)
    runs, pretrain_seconds = [], {}
    for seed in args.seeds:
        seg = dict(seg_common, **label_options(args, seed))
        seg['randomness.seed'] = seed
        for pre, entry, family in entries:
            todo = ['scratch'] if entry is None else ['lin', 'ft']
            print(f'seed {seed}, {pre}:', flush=True)
            ckpt = None
            if entry is not None:
                ckpt, seconds = pretrain(entry, seed, args)
                pretrain_seconds.setdefault(pre, []).append(seconds)
            for protocol in todo:
                config = seg_config(getattr(args, protocol), family)
                opts = dict(seg)
                if args.epochs:
                    opts.update(epoch_options(config, args.epochs, opts))
                if ckpt is not None:
                    opts['pretrained'] = ckpt
                work = osp.join(args.work_dir, pre.replace(' ', '_').replace(
                    '(', '').replace(')', ''), f'seed{seed}',
                                protocol + labelled_tag(args))
                metrics = one_run(PROTOCOLS[protocol], config, work, opts,
                                  _max_epochs(config, opts))
                runs.append(dict(pretrain=pre, protocol=PROTOCOLS[protocol],
                                 config=config, seed=seed, labelled=labelled,
                                 work_dir=work, **metrics))
    rows = aggregate(runs)
    print()
    print(format_table(rows))
    print()
    print(summary(rows, runs, pretrain_seconds))
    print(json.dumps(dict(transfer=rows, runs=runs,
                          pretrain_seconds=pretrain_seconds)), flush=True)
    return rows


if __name__ == '__main__':
    main()
