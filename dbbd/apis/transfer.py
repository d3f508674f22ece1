"""The transfer table: does pre-training help segmentation?

:func:`run_transfer` does what ``tools/transfer.py`` prints: for every
seed and every pre-training config, pre-train (a ``tools/train.py`` run),
then

- ``lin``, the linear probe: a multinomial logistic regression fitted by
  L-BFGS on the frozen backbone's point features
  (:func:`dbbd.apis.probe.linear_probe`, in this process; the SGD
  ``_lin`` configs stay for ``tools/train.py`` but are not what this row
  is),
- ``ft``, fine-tuning (a ``tools/train.py`` run of the ``--ft`` config
  with ``pretrained=`` the checkpoint),

and for ``none`` the same network from scratch (``scratch``). A
training run scores its validation at the last epoch (never the best:
the validation split is the test split here). Beside every table, the
floors of the same split and labelled points
(:func:`dbbd.apis.probe.floors`): the majority class, a probe on the raw
input features, a probe on the untrained backbone; a row at or below the
majority class is named in a ``warning:`` line. Then every fine-tune
against scratch seed by seed (:func:`paired`): the mean and spread of the
per-seed differences, with a ``note:`` line where the difference is
within its spread.

Finished work is reused when the command is repeated, through records
keyed by content (:mod:`dbbd.apis.records`): a pre-training by its
resolved config; a downstream run by its resolved config and the SHA-256
of the pre-training checkpoint; paths relative to the work dir; results
re-read from the runs' own outputs.
"""
import math
import os
import os.path as osp
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional

import numpy as np

from .records import config_sha256, read_record, write_record
from .train_runs import (METRICS, SubprocessTrainer, TrainRunError,
                         read_outputs, run_outputs)

__all__ = ['TransferError', 'TransferSpec', 'Entry', 'run_transfer', 'plan',
           'aggregate', 'format_table', 'summary', 'floor_warnings',
           'paired', 'format_paired',
           'PROTOCOLS', 'FAMILIES', 'FLOORS', 'DEMO_TEMPLATES']

PROTOCOLS = dict(lin='linear probe', ft='fine-tune', scratch='scratch')
FAMILIES = ('pointnet', 'spunet', 'ptv3')
#: floor kind -> row label ({family} filled in)
FLOORS = dict(majority='floor: majority class',
              raw='floor: probe on raw features',
              untrained='floor: probe on untrained {family}')
DEMO_TEMPLATES = {p: osp.join('configs', 'dbbd',
                              f'seg_{{family}}_small_demo_{p}.py')
                  for p in PROTOCOLS}


class TransferError(RuntimeError):
    """What stops the transfer table; one line naming the option or file
    and what to do."""


@dataclass
class TransferSpec:
    """The settings of one transfer table (``tools/transfer.py``'s
    options)."""
    pretrain_configs: List[str] = field(default_factory=lambda: [
        osp.join('configs', 'dbbd', 'dbbd_small_demo.py'), 'none'])
    seeds: List[int] = field(default_factory=lambda: [0])
    lin: Optional[str] = None
    ft: Optional[str] = None
    scratch: Optional[str] = None
    seg_configs: Optional[str] = None
    protocols: List[str] = field(default_factory=lambda: list(PROTOCOLS))
    epochs: Optional[int] = None
    pretrain_epochs: Optional[int] = None
    labelled_fraction: Optional[float] = None
    labelled_scenes: Optional[int] = None
    labelled_points: Optional[int] = None
    work_dir: str = osp.join('work_dirs', 'transfer')
    cfg_options: dict = field(default_factory=dict)
    pretrain_cfg_options: dict = field(default_factory=dict)
    seg_cfg_options: dict = field(default_factory=dict)
    probe_max_points: int = 100000
    probe_steps: int = 100
    probe_weight_decay: float = 1e-3
    probe_balance: str = 'auto'
    probe_device: Optional[str] = None
    progress_interval: float = 30.0
    jobs: int = 1

    def template(self, protocol: str) -> str:
        """The config template of a protocol: its own option, else
        ``seg_configs`` with ``{protocol}`` filled in, else the demo's."""
        own = getattr(self, protocol)
        if own:
            return own
        if self.seg_configs:
            return self.seg_configs.replace('{protocol}', protocol)
        return DEMO_TEMPLATES[protocol]

    def seg_config(self, protocol: str, family: str) -> str:
        return self.template(protocol).replace('{family}', family)

    def check(self) -> None:
        """One-line errors for values that cannot work."""
        if not self.seeds:
            raise TransferError('--seeds: give at least one seed')
        if len(set(self.seeds)) != len(self.seeds):
            raise TransferError(f'--seeds {" ".join(map(str, self.seeds))}: '
                                'a seed is repeated; give each once')
        bad = [p for p in self.protocols if p not in PROTOCOLS]
        if bad or not self.protocols:
            raise TransferError(f'--protocols {" ".join(self.protocols)}: '
                                f'use some of {", ".join(PROTOCOLS)}')
        for name in ('epochs', 'pretrain_epochs', 'labelled_scenes',
                     'labelled_points'):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise TransferError(f'--{name.replace("_", "-")} {v}: give '
                                    'a positive number')
        if self.labelled_fraction is not None and not \
                0 < self.labelled_fraction <= 1:
            raise TransferError(f'--labelled-fraction '
                                f'{self.labelled_fraction}: give a fraction '
                                'in (0, 1]')
        for name in ('probe_max_points', 'probe_steps'):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise TransferError(f'--{name.replace("_", "-")} {v}: give '
                                    'a positive whole number')
        if self.probe_balance not in ('auto', 'none'):
            raise TransferError(f'--probe-balance {self.probe_balance}: use '
                                'auto or none')
        if isinstance(self.jobs, bool) or not isinstance(self.jobs, int) \
                or self.jobs < 1:
            raise TransferError(f'--jobs {self.jobs}: give a whole number '
                                '>= 1 (runs at once)')
        if not self.progress_interval > 0:
            raise TransferError(f'--progress-interval '
                                f'{self.progress_interval}: give a number of '
                                'seconds > 0')
        for name in ('cfg_options', 'seg_cfg_options'):
            if 'pretrained' in getattr(self, name):
                raise TransferError(
                    f'--{name.replace("_", "-")} pretrained=...: the '
                    'transfer table sets pretrained= itself (each '
                    'pre-training\'s checkpoint, none for scratch); remove '
                    'it, or run tools/train.py for one checkpoint')
        if self.seg_configs and '{protocol}' not in self.seg_configs:
            raise TransferError(
                f'--seg-configs {self.seg_configs}: the template needs '
                '{protocol} (e.g. configs/scans/seg_{family}_scans_'
                '{protocol}.py)')


@dataclass
class Entry:
    """One pre-training (or ``none``) of the table."""
    name: str
    config: Optional[str]
    family: str
    protocols: List[str]

    @property
    def folder(self) -> str:
        return self.name.replace(' ', '_').replace('(', '').replace(')', '')


# ---------------------------------------------------------------------------
# Configs
# ---------------------------------------------------------------------------


def _name(config: str) -> str:
    return osp.splitext(osp.basename(config))[0]


def _load(config: str, opts: dict):
    from .probe import load_config
    try:
        return load_config(config, opts)
    except Exception as e:  # a config or option that does not resolve
        first = (str(e).strip().splitlines() or [''])[0]
        raise TransferError(f'cannot read {config} with its options: '
                            f'{type(e).__name__}: {first}') from None


def _types(obj):
    if isinstance(obj, dict):
        yield obj.get('type')
        for v in obj.values():
            yield from _types(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _types(v)


def _model(config, opts) -> dict:
    from dbbd.engine.hooks.checkpoint_hook import to_plain
    return to_plain(_load(config, opts).get('model') or {})


def backbone_family(config: str, opts: dict) -> str:
    """'spunet' when the model's backbone is, or holds, a SpUNet;
    'ptv3' for a PointTransformerV3; else 'pointnet'."""
    types = set(_types(_model(config, opts).get('backbone')))
    if 'SpUNet' in types:
        return 'spunet'
    if 'PointTransformerV3' in types:
        return 'ptv3'
    return 'pointnet'


def check_backbones(pretrain, seg, pre_opts, seg_opts) -> None:
    """The pre-training backbone (or the scene backbone inside DBBD's tree)
    must be the one the segmentation config builds, or its weights cannot
    load."""
    def plain(backbone):
        backbone = dict(backbone or {})
        backbone.pop('in_channels', None)  # filled in from the features
        # SpUNet's readout picks what forward returns, not which weights
        # exist: an encoder-only pre-training (readout='upcast', Sonata's
        # protocol) loads into the fine-tune's UNet, decoder fresh
        backbone.pop('readout', None)
        return backbone

    pre = _model(pretrain, pre_opts).get('backbone') or {}
    want = plain(_model(seg, seg_opts).get('backbone'))
    if want not in (plain(pre), plain(pre.get('scene_backbone'))):
        raise TransferError(
            f'the backbone of {pretrain} differs from that of {seg}: the '
            'pre-trained weights would not load; pass --lin/--ft configs of '
            'the same size (e.g. the small-mode ones for a small-mode '
            'pre-training)')


def epoch_options(config: str, epochs: int, opts: dict) -> dict:
    """Options that make ``config`` train ``epochs`` epochs, its
    epoch-based schedulers ending with it."""
    cfg = _load(config, opts)
    old = cfg.train_cfg.get('max_epochs')
    out = {'train_cfg.max_epochs': epochs}
    scheds = cfg.get('param_scheduler') or []
    for i, s in enumerate(scheds if isinstance(scheds, list) else [scheds]):
        for key in ('end', 'T_max'):
            if s.get(key) == old:
                out[f'param_scheduler.{i}.{key}'] = epochs
    return out


def label_options(spec: TransferSpec, seed: int) -> dict:
    out = {'train_dataloader.dataset.label_seed': seed}
    for name in ('labelled_fraction', 'labelled_scenes', 'labelled_points'):
        if getattr(spec, name) is not None:
            out[f'train_dataloader.dataset.{name}'] = getattr(spec, name)
    return out


def labelled_tag(spec: TransferSpec) -> str:
    """Suffix of the run folders of a label-efficient setting ('' for all
    labels), so settings do not overwrite each other's runs."""
    tag = ''
    if spec.labelled_fraction is not None:
        tag += f'_f{spec.labelled_fraction:g}'
    if spec.labelled_scenes is not None:
        tag += f'_s{spec.labelled_scenes}'
    if spec.labelled_points is not None:
        tag += f'_p{spec.labelled_points}'
    return tag


def labelled_text(spec: TransferSpec) -> str:
    scenes = ('all scenes' if spec.labelled_fraction is None and
              spec.labelled_scenes is None else
              f'{100 * spec.labelled_fraction:g}% of scenes'
              if spec.labelled_fraction is not None else
              f'{spec.labelled_scenes} scenes')
    points = ('all points' if spec.labelled_points is None else
              f'{spec.labelled_points} points/scene')
    return f'{scenes}, {points}'


def plan(spec: TransferSpec) -> List[Entry]:
    """The table's entries, in the order of ``--pretrain-configs``: one
    per pre-training config (its backbone's family; protocols ``lin``
    and ``ft`` of ``--protocols``), and for ``none`` one scratch entry per
    family of the pre-training configs (in their order; pointnet when
    there is none), ``none:FAMILY`` naming one. An entry given twice
    counts once; one without a protocol is left out."""
    pre_opts = dict(spec.cfg_options, **spec.pretrain_cfg_options)
    families = {}
    for entry in spec.pretrain_configs:
        if entry.split(':')[0] == 'none':
            continue
        if not osp.isfile(entry):
            raise TransferError(f'--pretrain-configs: config {entry} does '
                                'not exist')
        families[entry] = backbone_family(entry, pre_opts)
    present = list(dict.fromkeys(families.values())) or ['pointnet']
    entries, seen = [], set()
    for entry in spec.pretrain_configs:
        name, _, family = entry.partition(':')
        if name != 'none':
            todo = [p for p in ('lin', 'ft') if p in spec.protocols]
            new = [Entry(_name(entry), entry, families[entry], todo)]
        else:
            if family and family not in FAMILIES:
                raise TransferError(
                    f'--pretrain-configs {entry}: use none, '
                    + ', '.join(f'none:{f}' for f in FAMILIES))
            todo = ['scratch'] if 'scratch' in spec.protocols else []
            new = [Entry(f'none ({f})', None, f, todo)
                   for f in ([family] if family else present)]
        for e in new:
            if e.name not in seen and e.protocols:
                seen.add(e.name)
                entries.append(e)
    if not entries:
        raise TransferError(
            f'--protocols {" ".join(spec.protocols)} gives no row for '
            f'--pretrain-configs {" ".join(spec.pretrain_configs)}: lin and '
            'ft need a pre-training config, scratch needs none')
    return entries


# ---------------------------------------------------------------------------
# The work, each piece behind its record
# ---------------------------------------------------------------------------


class _Context:
    def __init__(self, spec, trainer, out):
        self.spec, self.trainer, self.out = spec, trainer, out


def _cfg_key(config: str, opts: dict, cfg=None) -> dict:
    """What a run depends on through its config: the resolved config
    (its files and the options merged in), by content."""
    return dict(config=_name(config), config_sha256=config_sha256(
        cfg if cfg is not None else _load(config, opts)))


def pretrain(ctx: _Context, entry: Entry, seed: int):
    """Pre-train (or reuse) and return ``(checkpoint path, its SHA-256,
    seconds)``: the last checkpoint of the run (an early stop of the
    pre-training config ends it before its last epoch)."""
    from dbbd.engine import find_latest_checkpoint
    from dbbd.engine.checkpoint import CheckpointLoadError
    spec = ctx.spec
    work = osp.join(spec.work_dir, entry.folder, f'seed{seed}', 'pretrain')
    opts = dict(spec.cfg_options, **spec.pretrain_cfg_options)
    opts['randomness.seed'] = seed
    if spec.pretrain_epochs:
        opts.update(epoch_options(entry.config, spec.pretrain_epochs, opts))
    max_epochs = int(_load(entry.config, opts).train_cfg.max_epochs)
    path = osp.join(work, 'transfer_pretrain.json')
    key = _cfg_key(entry.config, opts)
    record, why = read_record(path, 'pretrain', key)
    if record is not None:
        ckpt = record['paths']['checkpoint']
        ctx.out(f'  pre-training: reusing {ckpt}')
        return ckpt, record['files']['checkpoint']['sha256'], \
            record['fields'].get('seconds')
    if why != 'no record':
        ctx.out(f'  pre-training: not reusing {path}: {why}')
    try:
        seconds = ctx.trainer(entry.config, work, opts,
                              osp.join(work, 'train.log'), 'pre-training',
                              max_epochs)
    except TrainRunError as e:
        raise TransferError(str(e)) from None
    try:
        ckpt = find_latest_checkpoint(work)
    except CheckpointLoadError as e:
        raise TransferError(str(e)) from None
    if ckpt is None or not osp.isfile(ckpt):
        raise TransferError(f'{work}: no checkpoint after pre-training')
    if not ckpt.endswith(f'epoch_{max_epochs}.pth'):  # early stopping
        ctx.out(f'  pre-training stopped before epoch {max_epochs}: using '
                f'{osp.basename(ckpt)}')
    record = write_record(path, 'pretrain', key, dict(checkpoint=ckpt),
                          seconds=round(seconds, 1))
    return ckpt, record['files']['checkpoint']['sha256'], round(seconds, 1)


def _seg_opts(spec: TransferSpec, seed: int) -> dict:
    opts = dict(spec.cfg_options, **spec.seg_cfg_options)
    opts.update(label_options(spec, seed))
    opts['randomness.seed'] = seed
    return opts


def _say(ctx, label, metrics):
    ctx.out(f'  {label}: ' + '  '.join(f'{k} {100 * metrics[k]:.2f}'
                                      for k in METRICS))


def train_run(ctx: _Context, protocol: str, config: str, work: str,
              seed: int, ckpt=None, ckpt_sha=None) -> dict:
    """A fine-tuning or scratch run (or its reuse): metrics, per-class
    IoU and seconds, read from the run's own outputs."""
    spec = ctx.spec
    label = PROTOCOLS[protocol]
    opts = _seg_opts(spec, seed)
    if spec.epochs:
        opts.update(epoch_options(config, spec.epochs, opts))
    max_epochs = int(_load(config, opts).train_cfg.max_epochs)
    key = dict(_cfg_key(config, opts), protocol=protocol,
               pretrained_sha256=ckpt_sha)
    path = osp.join(work, 'transfer_run.json')
    record, why = read_record(path, 'train', key)
    if record is not None:
        try:
            found = read_outputs(record['paths']['scalars'],
                                 record['paths'].get('log'), max_epochs)
            ctx.out(f'  {label}: reusing {path}')
            return dict(found, seconds=record['fields'].get('seconds'))
        except TrainRunError as e:
            why = str(e)
    if why != 'no record':
        ctx.out(f'  {label}: not reusing {path}: {why}')
    run_opts = dict(opts)
    if ckpt is not None:
        run_opts['pretrained'] = ckpt
    try:
        seconds = ctx.trainer(config, work, run_opts,
                              osp.join(work, 'train.log'), label, max_epochs)
        found = run_outputs(work, max_epochs)
    except TrainRunError as e:
        raise TransferError(str(e)) from None
    files = dict(scalars=found['scalars'])
    if found['log']:
        files['log'] = found['log']
    write_record(path, 'train', key, files, config=config,
                 seconds=round(seconds, 1))
    _say(ctx, label, found['metrics'])
    return dict(found, seconds=round(seconds, 1))


def _probe_key(spec: TransferSpec) -> dict:
    return dict(max_train_points=spec.probe_max_points,
                steps=spec.probe_steps,
                weight_decay=spec.probe_weight_decay,
                balance=spec.probe_balance)


def _probe_cached(ctx, path, kind, key, names, compute):
    """Reuse a probe's confusion matrices (checked by the record) or
    compute them; returns ``(result dict, seconds)``."""
    record, why = read_record(path, kind, key)
    if record is not None:
        try:
            with np.load(record['paths']['confusion'],
                         allow_pickle=False) as z:
                result = dict(record['fields']['info'])
                result['confusion'] = {n: z[n] for n in names}
            ctx.out(f'  {kind}: reusing {path}')
            return result, record['fields'].get('seconds')
        except (KeyError, TypeError, ValueError, OSError):
            why = 'its confusion matrices or counts are incomplete'
    if why != 'no record':
        ctx.out(f'  {kind}: not reusing {path}: {why}')
    start = time.perf_counter()
    result = compute()
    seconds = round(time.perf_counter() - start, 1)
    os.makedirs(osp.dirname(path), exist_ok=True)
    npz = osp.join(osp.dirname(path), 'probe_confusion.npz')
    from dbbd.engine.checkpoint import _atomic_write
    _atomic_write(npz, 'wb', lambda f: np.savez(
        f, **{n: np.asarray(result['confusion'][n], np.int64)
              for n in names}))
    info = {k: v for k, v in result.items() if k != 'confusion'}
    write_record(path, kind, key, dict(confusion=npz), info=info,
                 seconds=seconds)
    return result, seconds


def _probe_errors():
    from dbbd.datasets.dbbd_dataset import DataPreparationError
    from dbbd.engine.checkpoint import CheckpointLoadError
    from dbbd.utils.config_check import ConfigError
    return (DataPreparationError, CheckpointLoadError, ConfigError,
            ValueError)


def probe_run(ctx: _Context, entry: Entry, work: str, seed: int, ckpt,
              ckpt_sha) -> dict:
    """The fitted linear probe of a pre-training's checkpoint."""
    from . import probe
    spec = ctx.spec
    config = spec.seg_config('lin', entry.family)
    opts = _seg_opts(spec, seed)
    cfg = _load(config, opts)
    key = dict(_cfg_key(config, opts, cfg), protocol='lin',
               pretrained_sha256=ckpt_sha, probe=_probe_key(spec))

    def compute():
        try:
            return probe.linear_probe(
                cfg, ckpt, seed, spec.probe_max_points, spec.probe_steps,
                spec.probe_weight_decay, spec.probe_device, ctx.out,
                balance=spec.probe_balance)
        except _probe_errors() as e:
            raise TransferError(f'linear probe of {entry.name} ({config}): '
                                f'{e}') from None

    result, seconds = _probe_cached(
        ctx, osp.join(work, 'transfer_probe.json'), 'linear probe', key,
        ['backbone'], compute)
    scores = probe.scores_from_confusion(result['confusion']['backbone'],
                                         result['class_names'])
    ctx.out(f'  linear probe: fitted on {result["n_fit"]:,} of '
            f'{result["n_labelled"]:,} labelled training points'
            + (' (a uniform seeded subset)' if result['n_fit'] <
               result['n_labelled'] else '')
            + f', scored on {result["val_points"]:,} validation points')
    _say(ctx, PROTOCOLS['lin'], scores)
    return dict(metrics={k: scores[k] for k in METRICS},
                class_iou=scores['class_iou'], seconds=seconds)


def floor_runs(ctx: _Context, family: str, seed: int) -> Dict[str, dict]:
    """The floors of a family's ``--lin`` config for one seed: kind ->
    dict(metrics, class_iou, seconds, majority_class)."""
    from . import probe
    spec = ctx.spec
    config = spec.seg_config('lin', family)
    opts = _seg_opts(spec, seed)
    cfg = _load(config, opts)
    key = dict(_cfg_key(config, opts, cfg), floors=list(FLOORS), seed=seed,
               probe=_probe_key(spec))
    work = osp.join(spec.work_dir, f'floors_{family}', f'seed{seed}',
                    'floors' + labelled_tag(spec))

    def compute():
        try:
            return probe.floors(cfg, seed, spec.probe_max_points,
                                spec.probe_steps, spec.probe_weight_decay,
                                spec.probe_device, ctx.out,
                                balance=spec.probe_balance)
        except _probe_errors() as e:
            raise TransferError(f'floors of {config}: {e}') from None

    result, seconds = _probe_cached(
        ctx, osp.join(work, 'transfer_floors.json'), 'floors', key,
        list(FLOORS), compute)
    names = result['class_names']
    out = {}
    for kind in FLOORS:
        scores = probe.scores_from_confusion(result['confusion'][kind], names)
        out[kind] = dict(metrics={k: scores[k] for k in METRICS},
                         class_iou=scores['class_iou'], seconds=seconds,
                         majority_class=names[result['majority_class']])
    ctx.out(f'  floors: majority class ({out["majority"]["majority_class"]})'
            f' mIoU {100 * out["majority"]["metrics"]["mIoU"]:.2f}; probe on '
            f'raw features {100 * out["raw"]["metrics"]["mIoU"]:.2f}; probe '
            f'on untrained {family} '
            f'{100 * out["untrained"]["metrics"]["mIoU"]:.2f}')
    return out


# ---------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------


def _mean_std(values):
    """Mean and sample standard deviation (n - 1; None for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values)
                           / (len(values) - 1))


def aggregate(runs: List[dict]) -> List[dict]:
    """One row per (pre-training, protocol), in the order of ``runs``:
    the mean and the sample standard deviation (n - 1) over its seeds."""
    rows = {}
    for r in runs:
        rows.setdefault((r['pretrain'], r['protocol']), []).append(r)
    out = []
    for (pre, protocol), rs in rows.items():
        row = dict(pretrain=pre, protocol=protocol, family=rs[0]['family'],
                   seeds=[r['seed'] for r in rs], labelled=rs[0]['labelled'])
        for k in METRICS:
            row[k], row[f'{k}_std'] = _mean_std([r[k] for r in rs])
        out.append(row)
    return out


def _cell(r, k):
    s = f'{100 * r[k]:.1f}'
    return s + (f' ± {100 * r[k + "_std"]:.1f}'
                if r.get(k + '_std') is not None else '')


def format_table(rows: List[dict], floor_rows: List[dict] = ()) -> str:
    """Markdown table, values in percent (mean ± sample std over seeds),
    the floors last."""
    lines = ['| pre-training | protocol | labelled | seeds | mIoU | mAcc | '
             'allAcc |', '|---|---|---|---|---|---|---|']
    for r in list(rows) + list(floor_rows):
        lines.append(f'| {r["pretrain"]} | {r["protocol"]} | '
                     f'{r["labelled"]} | {",".join(map(str, r["seeds"]))} | '
                     f'{_cell(r, "mIoU")} | {_cell(r, "mAcc")} | '
                     f'{_cell(r, "allAcc")} |')
    return '\n'.join(lines)


def summary(rows: List[dict], runs: List[dict], pretrain_seconds: dict,
            floor_rows: List[dict] = ()) -> str:
    """One row per pre-training: its linear-probe and fine-tune (or
    scratch) mIoU, the pre-training and the fine-tuning time (means over
    seeds); then the floors (the majority class in both columns, the
    probes in the linear-probe column)."""
    def mean(xs):
        xs = [x for x in xs if x is not None]
        return sum(xs) / len(xs) if xs else None

    def fmt(r):
        return '-' if r is None else _cell(r, 'mIoU')

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
    for r in floor_rows:
        both = r['floor'] == 'majority'
        lines.append(f'| {r["pretrain"]} | {fmt(r)} | '
                     f'{fmt(r) if both else "-"} | - | - |')
    return '\n'.join(lines)


def floor_warnings(rows: List[dict], floor_runs_: List[dict]) -> List[str]:
    """A ``warning:`` line for every row whose mIoU is at or below the
    majority class's (the mean over the row's seeds, same family)."""
    lines = []
    for r in rows:
        maj = [f for f in floor_runs_ if f['floor'] == 'majority' and
               f['family'] == r['family'] and f['seed'] in r['seeds']]
        if len(maj) != len(r['seeds']):
            continue
        floor = sum(f['mIoU'] for f in maj) / len(maj)
        r['below_majority'] = r['mIoU'] <= floor
        if r['below_majority']:
            lines.append(
                f'warning: {r["pretrain"]} {r["protocol"]}: mIoU '
                f'{100 * r["mIoU"]:.2f} is at or below the majority-class '
                f'floor ({100 * floor:.2f}, always "{maj[0]["majority_class"]}'
                '"): it shows nothing beyond the class frequencies')
    return lines


def paired(runs: List[dict]) -> List[dict]:
    """Fine-tune against scratch, seed by seed: for every pre-training
    with fine-tune runs, the difference of its mIoU from the scratch run
    of the same family and seed (same labelled subset, initialisation
    seed and augmentation), over the seeds both have.

    The seeds' spread of a fine-tune row and of the scratch row is mostly
    what every run of that seed shares (which scenes were labelled, which
    rare classes they hold); the per-seed difference removes it, so its
    mean and sample standard deviation (n - 1) are the comparison to read.
    Returns one dict per pre-training (in the order of ``runs``): pretrain,
    scratch (the scratch row's name), family, seeds, diffs, mIoU_diff,
    mIoU_diff_std (None for one seed), above (seeds where the fine-tune
    is higher)."""
    scratch = {(r['family'], r['seed']): r for r in runs
               if r['protocol'] == PROTOCOLS['scratch']}
    by = {}
    for r in runs:
        if r['protocol'] != PROTOCOLS['ft']:
            continue
        base = scratch.get((r['family'], r['seed']))
        if base is not None:
            by.setdefault(r['pretrain'], []).append((r, base))
    out = []
    for pre, pairs in by.items():
        diffs = [r['mIoU'] - b['mIoU'] for r, b in pairs]
        mean, std = _mean_std(diffs)
        out.append(dict(pretrain=pre, scratch=pairs[0][1]['pretrain'],
                        family=pairs[0][0]['family'],
                        seeds=[r['seed'] for r, _ in pairs], diffs=diffs,
                        mIoU_diff=mean, mIoU_diff_std=std,
                        above=sum(d > 0 for d in diffs)))
    return out


def format_paired(rows: List[dict]) -> List[str]:
    """The paired comparison as a markdown table (mIoU points), and a
    ``note:`` line for every difference no larger than its standard
    deviation over seeds (or with a single seed)."""
    if not rows:
        return []
    lines = ['| pre-training | scratch | seeds | fine-tune minus scratch '
             '(mIoU, paired by seed) | above scratch |',
             '|---|---|---|---|---|']
    notes = []
    for r in rows:
        d = f'{100 * r["mIoU_diff"]:+.1f}'
        if r['mIoU_diff_std'] is not None:
            d += f' ± {100 * r["mIoU_diff_std"]:.1f}'
        n = len(r['seeds'])
        lines.append(f'| {r["pretrain"]} | {r["scratch"]} | '
                     f'{",".join(map(str, r["seeds"]))} | {d} | '
                     f'{r["above"]} of {n} |')
        if r['mIoU_diff_std'] is None:
            notes.append(f'note: {r["pretrain"]} against {r["scratch"]}: '
                         'one seed; a single run moves by a point or two, '
                         'give --seeds 0 1 2 before reading the difference')
        elif abs(r['mIoU_diff']) <= r['mIoU_diff_std']:
            notes.append(
                f'note: {r["pretrain"]} against {r["scratch"]}: the '
                f'difference ({d} mIoU points over {n} seeds) is within '
                'one standard deviation: not told apart from scratch')
    return lines + notes


def _floor_label(kind, family, several):
    label = FLOORS[kind].format(family=family)
    return label + (f' ({family})' if several and kind != 'untrained'
                    else '')


# ---------------------------------------------------------------------------
# The whole table
# ---------------------------------------------------------------------------


def _validate(spec: TransferSpec, entries: List[Entry]) -> None:
    pre_opts = dict(spec.cfg_options, **spec.pretrain_cfg_options)
    seg_opts = dict(spec.cfg_options, **spec.seg_cfg_options)
    for family in dict.fromkeys(e.family for e in entries):
        lin = spec.seg_config('lin', family)
        if not osp.isfile(lin):
            raise TransferError(
                f'--lin: config {lin} does not exist (the linear probe and '
                'the floors read its datasets and backbone); pass --lin or '
                '--seg-configs')
    for e in entries:
        for protocol in e.protocols:
            seg = spec.seg_config(protocol, e.family)
            if not osp.isfile(seg):
                raise TransferError(f'--{protocol}: config {seg} does not '
                                    'exist')
            if e.config is not None:
                check_backbones(e.config, seg, pre_opts, seg_opts)


class _Task:
    """One piece of the table: ``fn(ctx, done) -> result`` (``done``:
    key -> result of the tasks finished so far) once the tasks of
    ``deps`` (keys) are done; ``group`` heads its lines; ``local``: it
    computes in this process (probes, floors) instead of a subprocess."""

    def __init__(self, key, group, fn, deps=(), local=False):
        self.key, self.group, self.fn = key, group, fn
        self.deps, self.local = tuple(deps), local


def _tasks(ctx: _Context, entries: List[Entry], families: List[str],
           labelled: str) -> List['_Task']:
    """The table's work in the order a serial run does it: per seed the
    floors of every family, then per entry its pre-training and its
    protocols (a linear probe and a fine-tune wait for their
    pre-training)."""
    spec = ctx.spec
    tag = labelled_tag(spec)
    tasks = []
    for seed in spec.seeds:
        for family in families:
            def floors_task(c, done, family=family, seed=seed):
                rows = []
                for kind, r in floor_runs(c, family, seed).items():
                    rows.append(dict(
                        pretrain=_floor_label(kind, family,
                                              len(families) > 1),
                        protocol='-' if kind == 'majority' else
                        PROTOCOLS['lin'],
                        floor=kind, family=family, seed=seed,
                        labelled=labelled,
                        majority_class=r['majority_class'],
                        class_iou=r['class_iou'], seconds=r['seconds'],
                        **r['metrics']))
                return rows
            tasks.append(_Task(('floors', seed, family),
                               f'seed {seed}, floors ({family})',
                               floors_task, local=True))
        for e in entries:
            group = f'seed {seed}, {e.name}'
            pre_key = ('pretrain', seed, e.name)
            if e.config is not None:
                tasks.append(_Task(
                    pre_key, group,
                    lambda c, done, e=e, seed=seed: pretrain(c, e, seed)))
            for protocol in e.protocols:
                def run_task(c, done, e=e, seed=seed, protocol=protocol,
                             pre_key=pre_key):
                    config = spec.seg_config(protocol, e.family)
                    work = osp.join(spec.work_dir, e.folder, f'seed{seed}',
                                    protocol + tag)
                    ckpt, sha = (done[pre_key][:2] if e.config is not None
                                 else (None, None))
                    if protocol == 'lin':
                        res = probe_run(c, e, work, seed, ckpt, sha)
                    else:
                        res = train_run(c, protocol, config, work, seed,
                                        ckpt, sha)
                    return dict(
                        pretrain=e.name, protocol=PROTOCOLS[protocol],
                        family=e.family, config=config, seed=seed,
                        labelled=labelled, work_dir=work,
                        seconds=res.get('seconds'),
                        class_iou=res['class_iou'], **res['metrics'])
                tasks.append(_Task(
                    (protocol, seed, e.name), group, run_task,
                    deps=[pre_key] if e.config is not None else [],
                    local=protocol == 'lin'))
    return tasks


def _run_tasks(tasks: List['_Task'], jobs: int, ctx: _Context,
               trainer) -> dict:
    """Run ``tasks``; key -> result.

    ``jobs == 1``: one after the other, in their order, each group's
    lines under a ``seed S, NAME:`` head (as the table always printed).
    ``jobs > 1``: up to ``jobs`` at once, in their order as their
    dependencies finish; each line names its group. The in-process ones
    (probes, floors) take turns among themselves (mmengine's registries
    and scopes are per process). The first error stops the rest: no new
    task starts, a running ``tools/train.py`` is terminated (through the
    trainer's ``cancel`` event when it has one) and the error is raised
    once every running task has returned.
    """
    import threading
    from concurrent.futures import (FIRST_COMPLETED, ThreadPoolExecutor,
                                    wait)
    done = {}
    if jobs == 1:
        group = None
        for t in tasks:
            if t.group != group:
                group = t.group
                ctx.out(f'{group}:')
            done[t.key] = t.fn(ctx, done)
        return done

    say_lock, local_lock = threading.Lock(), threading.Lock()

    def run(t):
        def out(line, prefix=t.group):
            with say_lock:
                ctx.out(f'{prefix}: {line.strip()}')
        tctx = _Context(ctx.spec, ctx.trainer, out)
        if t.local:
            with local_lock:
                return t.fn(tctx, done)
        return t.fn(tctx, done)

    cancel = getattr(trainer, 'cancel', None)
    pending, running, error = list(tasks), {}, None
    pool = ThreadPoolExecutor(max_workers=jobs)
    try:
        while running or (pending and error is None):
            if error is None:
                for t in [t for t in pending
                          if all(d in done for d in t.deps)]:
                    if len(running) >= jobs:
                        break
                    pending.remove(t)
                    running[pool.submit(run, t)] = t
            if not running:
                raise RuntimeError('transfer: tasks wait on work that '
                                   'never runs: ' + ', '.join(
                                       str(t.key) for t in pending))
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for f in finished:
                t = running.pop(f)
                try:
                    done[t.key] = f.result()
                except BaseException as e:  # noqa: B036 (re-raised below)
                    if error is None:
                        error = e
                        if cancel is not None:
                            cancel.set()
    except BaseException:  # Ctrl-C in this thread: stop the runs, then go
        if cancel is not None:
            cancel.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    if error is not None:
        raise error
    return done


def run_transfer(spec: TransferSpec, trainer: Optional[Callable] = None,
                 out: Callable[[str], None] = None) -> dict:
    """Run (or reuse) everything the table needs and print it.

    Args:
        spec: the settings.
        trainer: ``trainer(config, work_dir, opts, log_path, label,
            max_epochs) -> seconds``, one training run (default: a watched
            ``tools/train.py`` subprocess, :class:`~dbbd.apis.train_runs.
            SubprocessTrainer`).
        out: where lines go (default: ``print`` with flush).

    Returns:
        dict(transfer=rows, floors=floor rows, runs, floor_runs,
        pretrain_seconds, paired (:func:`paired`), warnings), what the
        last output line holds as JSON.

    Raises:
        TransferError: one line.
    """
    import json
    if out is None:
        def out(line):
            print(line, flush=True)
    spec.check()
    entries = plan(spec)
    _validate(spec, entries)
    if trainer is None:
        try:
            trainer = SubprocessTrainer(interval=spec.progress_interval,
                                        out=out)
        except TrainRunError as e:
            raise TransferError(str(e)) from None
    ctx = _Context(spec, trainer, out)
    families = list(dict.fromkeys(e.family for e in entries))
    labelled = labelled_text(spec)
    out(f'transfer: {", ".join(e.name for e in entries)}; seeds '
        f'{" ".join(map(str, spec.seeds))}; {labelled}. linear probe = '
        'logistic regression fitted by L-BFGS on the frozen backbone\'s '
        f'point features (up to {spec.probe_max_points:,} labelled training '
        'points, a seeded subset beyond), fine-tune and scratch = '
        'tools/train.py runs scored at their last epoch; read every row '
        'against the floors of its family'
        + (f'; up to {spec.jobs} runs at once' if spec.jobs > 1 else ''))
    tasks = _tasks(ctx, entries, families, labelled)
    done = _run_tasks(tasks, spec.jobs, ctx, trainer)
    runs, floors_, pretrain_seconds = [], [], {}
    for t in tasks:  # the order of the plan, whatever finished first
        kind, seed, name = t.key[:3]
        if kind == 'floors':
            floors_.extend(done[t.key])
        elif kind == 'pretrain':
            pretrain_seconds.setdefault(name, []).append(done[t.key][2])
        else:
            runs.append(done[t.key])
    rows = aggregate(runs)
    floor_rows = aggregate(floors_)
    for fr in floor_rows:
        fr['floor'] = next(f['floor'] for f in floors_
                           if f['pretrain'] == fr['pretrain'])
    warnings = floor_warnings(rows, floors_)
    pairs = paired(runs)
    out('')
    out(format_table(rows, floor_rows))
    out('')
    out(summary(rows, runs, pretrain_seconds, floor_rows))
    if pairs:
        out('')
        for line in format_paired(pairs):
            out(line)
    for line in warnings:
        out(line)
    result = dict(transfer=rows, floors=floor_rows, runs=runs,
                  floor_runs=floors_, pretrain_seconds=pretrain_seconds,
                  paired=pairs, warnings=warnings)
    out(json.dumps(result))
    return result
