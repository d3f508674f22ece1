"""The transfer table in this process (dbbd.apis.transfer): the training
runs are stood in for by tests/helpers/fake_train.py, the linear probes
and the floors are real (tiny PointNet tree on the synthetic rooms).

The table beside its floors, warnings, sample standard deviations,
per-class IoU, --protocols, the order of the rows; and the records:
edited metrics, a pre-training record pointing at another run's
checkpoint, changed pre-training options and a copied work dir."""
import argparse
import itertools
import json
import os
import os.path as osp
import shutil
import threading
import time

import pytest

from fake_train import FakeTrainer
from tiny import DEMO, REPO, TINY_MODEL, TINY_SEG_MODEL, cfg_options

CONTRAST = osp.join(REPO, 'configs', 'scene_contrast',
                    'scene_contrast_spunet_small_demo.py')


def _opts(words):
    from mmengine.config import DictAction
    p = argparse.ArgumentParser()
    p.add_argument('--o', nargs='+', action=DictAction, default={})
    return dict(p.parse_args(['--o', *words]).o) if words else {}


@pytest.fixture
def make_spec(demo_root, tmp_path):
    """A TransferSpec of the demo pre-training and scratch on the tiny
    PointNet, 40 labelled points per room, one epoch."""
    from dbbd.apis.transfer import TransferSpec
    common = _opts([f'data_root={demo_root}', *cfg_options(TINY_SEG_MODEL)])
    heads = _opts([w for w in cfg_options(TINY_MODEL)
                   if not w.startswith('model.backbone')])

    def make(**kw):
        base = dict(pretrain_configs=[DEMO, 'none'], seeds=[0], epochs=1,
                    pretrain_epochs=1, labelled_points=40,
                    work_dir=str(tmp_path / 'transfer'),
                    cfg_options=dict(common),
                    pretrain_cfg_options=dict(heads))
        base.update(kw)
        return TransferSpec(**base)
    return make


def _run(spec, trainer):
    from dbbd.apis.transfer import run_transfer
    out = []
    result = run_transfer(spec, trainer=trainer, out=out.append)
    return result, '\n'.join(out).splitlines()


def _row(lines, start):
    return [ln for ln in lines if ln.startswith(start)]


def test_table_with_floors_warnings_std_and_class_iou(make_spec):
    trainer = FakeTrainer(miou={'scratch': 0.0})
    result, lines = _run(make_spec(seeds=[0, 1]), trainer)
    assert trainer.labels() == ['pre-training', 'fine-tune', 'scratch'] * 2
    table = lines[lines.index('| pre-training | protocol | labelled | seeds '
                              '| mIoU | mAcc | allAcc |'):]
    names = [ln.split(' | ')[0][2:] for ln in table[2:9]]
    assert names == ['dbbd_small_demo', 'dbbd_small_demo', 'none (pointnet)',
                     'floor: majority class', 'floor: probe on raw features',
                     'floor: probe on untrained pointnet', '']
    # fine-tune: 0.30 and 0.31; the sample standard deviation (n - 1)
    ft = next(r for r in result['transfer'] if r['protocol'] == 'fine-tune')
    assert ft['mIoU'] == pytest.approx(0.305)
    assert ft['mIoU_std'] == pytest.approx(0.00707107, abs=1e-7)
    assert '| dbbd_small_demo | fine-tune | all scenes, 40 points/scene | '\
        '0,1 | 30.5 ± 0.7 |' in table[3]
    # the summary has the floors too
    assert len(_row(lines, '| floor: ')) == 6
    assert '| floor: majority class | 3.7 ± 0.0 | 3.7 ± 0.0 | - | - |' in \
        lines
    # scratch (0.0 and 0.01) is below the majority class: one warning
    warnings = _row(lines, 'warning:')
    assert len(warnings) == 1 and 'none (pointnet) scratch' in warnings[0]
    assert result['warnings'] == warnings
    majority = [f for f in result['floor_runs'] if f['floor'] == 'majority']
    assert {f['majority_class'] for f in majority} == {'wall'}
    # fine-tune against scratch seed by seed: 0.30 - 0.00, 0.31 - 0.01
    assert '| dbbd_small_demo | none (pointnet) | 0,1 | +30.0 ± 0.0 | ' \
        '2 of 2 |' in lines
    assert result['paired'][0]['diffs'] == pytest.approx([0.30, 0.30])
    assert _row(lines, 'note:') == []
    # per-class IoU of every run; the JSON line is the result
    assert json.loads(lines[-1]) == json.loads(json.dumps(result))
    runs = {(r['protocol'], r['seed']): r for r in result['runs']}
    assert runs[('fine-tune', 1)]['class_iou'] == dict(
        wall=0.21, floor=0.41, cabinet=None)
    lin = runs[('linear probe', 0)]
    assert len(lin['class_iou']) == 20
    known = [v for v in lin['class_iou'].values() if v is not None]
    assert lin['mIoU'] == pytest.approx(sum(known) / len(known))


def test_one_seed_has_no_spread():
    from dbbd.apis.transfer import aggregate, format_table
    run = dict(pretrain='p', protocol='fine-tune', family='pointnet',
               seed=0, labelled='all', mIoU=0.5, mAcc=0.6, allAcc=0.7)
    rows = aggregate([run])
    assert rows[0]['mIoU_std'] is None
    assert '| p | fine-tune | all | 0 | 50.0 | 60.0 | 70.0 |' in \
        format_table(rows)
    rows = aggregate([run, dict(run, seed=1, mIoU=0.6),
                      dict(run, seed=2, mIoU=0.7)])
    assert rows[0]['mIoU_std'] == pytest.approx(0.1)  # n - 1
    assert '60.0 ± 10.0' in format_table(rows)


def test_protocols_run_only_what_they_need(make_spec):
    trainer = FakeTrainer()
    result, lines = _run(make_spec(protocols=['lin'], probe_max_points=100),
                         trainer)
    assert trainer.labels() == ['pre-training']
    assert '  linear probe: fitted on 100 of 160 labelled training points ' \
        '(a uniform seeded subset), scored on 5,290 validation points' in lines
    assert [r['protocol'] for r in result['transfer']] == ['linear probe']
    assert len(result['floors']) == 3
    trainer = FakeTrainer()
    result, _ = _run(make_spec(protocols=['scratch']), trainer)
    assert trainer.labels() == ['scratch']  # no pre-training
    assert [r['pretrain'] for r in result['transfer']] == ['none (pointnet)']


def test_rows_follow_the_command_line(make_spec):
    from dbbd.apis.transfer import TransferError, plan
    spec = make_spec(pretrain_configs=['none:spunet', DEMO, 'none:pointnet',
                                       'none'])
    assert [(e.name, e.protocols) for e in plan(spec)] == [
        ('none (spunet)', ['scratch']),
        ('dbbd_small_demo', ['lin', 'ft']),
        ('none (pointnet)', ['scratch'])]
    spec = make_spec(pretrain_configs=['none', CONTRAST, DEMO],
                     cfg_options={}, pretrain_cfg_options={})
    assert [e.name for e in plan(spec)] == [
        'none (spunet)', 'none (pointnet)',
        'scene_contrast_spunet_small_demo', 'dbbd_small_demo']
    with pytest.raises(TransferError, match='gives no row'):
        plan(make_spec(pretrain_configs=['none'], protocols=['ft']))
    with pytest.raises(TransferError, match='none:pointnet'):
        plan(make_spec(pretrain_configs=['none:tree']))


def test_settings_that_cannot_work_are_one_line(make_spec):
    from dbbd.apis.transfer import TransferError, run_transfer
    bad = [(dict(seeds=[1, 1]), '--seeds 1 1'),
           (dict(protocols=['probe']), '--protocols probe'),
           (dict(probe_max_points=0), '--probe-max-points 0'),
           (dict(progress_interval=0), '--progress-interval 0'),
           (dict(jobs=0), '--jobs 0'),
           (dict(cfg_options={'pretrained': 'x.pth'}),
            '--cfg-options pretrained='),
           (dict(seg_configs='configs/scans/seg_{family}.py'),
            '--seg-configs'),
           (dict(lin='configs/dbbd/seg_{family}_nothing_lin.py'),
            '--lin: config configs/dbbd/seg_pointnet_nothing_lin.py')]
    for kw, match in bad:
        with pytest.raises(TransferError, match=match) as err:
            run_transfer(make_spec(**kw), trainer=FakeTrainer(),
                         out=lambda line: None)
        assert '\n' not in str(err.value)


def test_seg_configs_template_names_all_three(make_spec):
    spec = make_spec(seg_configs='configs/scans/seg_{family}_scans_'
                     '{protocol}.py', scratch='s_{family}.py')
    assert spec.seg_config('lin', 'spunet') == \
        'configs/scans/seg_spunet_scans_lin.py'
    assert spec.seg_config('ft', 'pointnet') == \
        'configs/scans/seg_pointnet_scans_ft.py'
    assert spec.seg_config('scratch', 'spunet') == 's_spunet.py'


# ---------------------------------------------------------------------------
# Records that cannot be fooled
# ---------------------------------------------------------------------------


def _record(path):
    with open(path) as f:
        return json.load(f)


def _timeless(runs):
    return [{k: v for k, v in r.items() if k != 'seconds'} for r in runs]


def _rewrite(path, record):
    """Write ``record`` back with a digest that matches (a careful
    forgery, not a slip of the editor)."""
    from dbbd.apis.records import _digest
    record['digest'] = _digest(record['kind'], record['key'],
                               record['files'], record['fields'])
    with open(path, 'w') as f:
        json.dump(record, f)


def test_edited_metrics_are_never_printed(make_spec):
    spec = make_spec(protocols=['lin', 'ft'])
    trainer = FakeTrainer()
    first, _ = _run(spec, trainer)
    work = osp.join(spec.work_dir, 'dbbd_small_demo', 'seed0', 'ft_p40')
    record_path = osp.join(work, 'transfer_run.json')
    # 1. metrics written into the record, the digest redone: the record
    # is reused, its metrics are not read
    record = _record(record_path)
    record['fields']['metrics'] = {'mIoU': 0.99}
    _rewrite(record_path, record)
    result, lines = _run(spec, trainer)
    assert trainer.labels() == ['pre-training', 'fine-tune']  # nothing new
    assert result['runs'] == first['runs']
    assert not any('99.0' in ln for ln in lines)
    # 2. the record edited by hand: stale, the run is redone
    with open(record_path) as f:
        text = f.read()
    with open(record_path, 'w') as f:
        f.write(text.replace('"seconds": 1.5', '"seconds": 0.1'))
    result, lines = _run(spec, trainer)
    assert trainer.labels()[2:] == ['fine-tune']
    assert any('not reusing' in ln and 'edited' in ln for ln in lines)
    assert result['runs'] == first['runs']
    # 3. the run's own scalars.json edited: it no longer matches the
    # record; the run is redone and its real score printed
    stamp = next(d for d in sorted(os.listdir(work))[::-1]
                 if osp.isdir(osp.join(work, d, 'vis_data')))
    scalars = osp.join(work, stamp, 'vis_data', 'scalars.json')
    with open(scalars) as f:
        text = f.read()
    with open(scalars, 'w') as f:
        f.write(text.replace('"val/mIoU": 0.3', '"val/mIoU": 0.99'))
    result, lines = _run(spec, trainer)
    assert trainer.labels()[3:] == ['fine-tune']
    assert any('scalars changed' in ln for ln in lines)
    ft = next(r for r in result['runs'] if r['protocol'] == 'fine-tune')
    assert ft['mIoU'] == 0.3
    # 4. the probe's confusion matrices edited: recomputed, same scores
    probe = osp.join(spec.work_dir, 'dbbd_small_demo', 'seed0', 'lin_p40',
                     'probe_confusion.npz')
    import numpy as np
    with np.load(probe) as z:
        edited = {k: z[k] for k in z.files}
    edited['backbone'] = np.eye(20, dtype=np.int64) * 100
    np.savez(probe, **edited)
    result, lines = _run(spec, trainer)
    assert any('linear probe: not reusing' in ln for ln in lines)
    assert _timeless(result['runs']) == _timeless(first['runs'])


def test_pretraining_record_pointing_elsewhere_is_not_reused(make_spec):
    spec = make_spec(seeds=[0, 1], protocols=['ft'],
                     pretrain_configs=[DEMO])
    trainer = FakeTrainer()
    _run(spec, trainer)
    seed0 = osp.join(spec.work_dir, 'dbbd_small_demo', 'seed0', 'pretrain')
    seed1 = osp.join(spec.work_dir, 'dbbd_small_demo', 'seed1', 'pretrain')
    path = osp.join(seed0, 'transfer_pretrain.json')
    other = _record(osp.join(seed1, 'transfer_pretrain.json'))
    for where in ('../../seed1/pretrain/epoch_1.pth',
                  osp.join(seed1, 'epoch_1.pth')):
        record = _record(path)
        record['files']['checkpoint'] = dict(
            path=where, sha256=other['files']['checkpoint']['sha256'])
        _rewrite(path, record)
        before = len(trainer.calls)
        _, lines = _run(spec, trainer)
        new = trainer.calls[before:]
        # seed 0 pre-trains again, in its own folder; its fine-tune is
        # that of its own checkpoint (the same bytes: reused)
        assert [(c[0], c[1]) for c in new] == [('pre-training', seed0)]
        assert any('is not a file inside its folder' in ln for ln in lines)
        assert _record(path)['files']['checkpoint']['path'] == 'epoch_1.pth'
    ft0 = [c for c in trainer.calls if c[0] == 'fine-tune' and
           '/seed0/' in c[1]]
    assert all(c[2]['pretrained'] == osp.join(seed0, 'epoch_1.pth')
               for c in ft0)


def test_new_pretraining_options_redo_everything_downstream(make_spec):
    spec = make_spec(pretrain_configs=[DEMO], protocols=['lin', 'ft'])
    trainer = FakeTrainer()
    _run(spec, trainer)
    spec.pretrain_cfg_options['optim_wrapper.optimizer.lr'] = 0.5
    _, lines = _run(spec, trainer)
    assert trainer.labels() == ['pre-training', 'fine-tune'] * 2
    assert any(ln.startswith('  linear probe: not reusing') and
               'another config, option or checkpoint' in ln for ln in lines)
    assert not any('linear probe: reusing' in ln for ln in lines)
    # and only the segmentation options: pre-training reused, the rest not
    spec.seg_cfg_options['optim_wrapper.optimizer.lr'] = 0.5
    _, lines = _run(spec, trainer)
    assert trainer.labels()[4:] == ['fine-tune']
    assert any('pre-training: reusing' in ln for ln in lines)


def test_copied_work_dir_reads_its_own_files(make_spec, tmp_path):
    spec = make_spec()
    trainer = FakeTrainer()
    first, _ = _run(spec, trainer)
    copy = str(tmp_path / 'copy')
    shutil.copytree(spec.work_dir, copy)
    shutil.rmtree(spec.work_dir)
    spec.work_dir = copy
    result, lines = _run(spec, trainer)
    assert trainer.labels() == ['pre-training', 'fine-tune', 'scratch']
    assert sum('reusing' in ln for ln in lines) == 5
    text = '\n'.join(lines)
    assert str(tmp_path / 'transfer') not in text
    for r, f in zip(result['runs'], first['runs']):
        assert r['work_dir'].startswith(copy)
        assert {k: v for k, v in r.items() if k != 'work_dir'} == \
            {k: v for k, v in f.items() if k != 'work_dir'}
    for folder, _, files in os.walk(copy):
        for name in files:
            if name.startswith('transfer_') and name.endswith('.json'):
                rec = _record(osp.join(folder, name))
                assert all(not osp.isabs(v['path'])
                           for v in rec['files'].values())


def test_fine_tune_is_paired_with_scratch_seed_by_seed():
    from dbbd.apis.transfer import format_paired, paired

    def run(pre, protocol, seed, miou, family='spunet'):
        return dict(pretrain=pre, protocol=protocol, family=family,
                    seed=seed, labelled='16 scenes', mIoU=miou, mAcc=0,
                    allAcc=0)
    # seed 2's fine-tune has no scratch run; the pointnet scratch and the
    # linear probe take no part
    runs = [run('a', 'fine-tune', 0, 0.237), run('a', 'fine-tune', 1, 0.166),
            run('a', 'fine-tune', 2, 0.5), run('a', 'linear probe', 0, 0.9),
            run('b', 'fine-tune', 0, 0.30), run('b', 'fine-tune', 1, 0.20),
            run('none (spunet)', 'scratch', 0, 0.243),
            run('none (spunet)', 'scratch', 1, 0.164),
            run('none (pointnet)', 'scratch', 0, 0.0, family='pointnet'),
            run('c', 'fine-tune', 0, 0.25)]
    rows = paired(runs)
    assert [r['pretrain'] for r in rows] == ['a', 'b', 'c']
    a, b, c = rows
    # a: 23.7 - 24.3 = -0.6 and 16.6 - 16.4 = +0.2: mean -0.2, sample sd
    # |(-0.6) - (+0.2)| / sqrt(2) = 0.566
    assert a['seeds'] == [0, 1] and a['scratch'] == 'none (spunet)'
    assert a['diffs'] == pytest.approx([-0.006, 0.002])
    assert a['mIoU_diff'] == pytest.approx(-0.002)
    assert a['mIoU_diff_std'] == pytest.approx(0.008 / 2 ** 0.5)
    assert a['above'] == 1
    # b: +5.7 and +3.6: mean 4.65, sd 1.48: outside its spread
    assert b['mIoU_diff'] == pytest.approx(0.0465)
    assert b['above'] == 2
    assert c['seeds'] == [0] and c['mIoU_diff_std'] is None
    lines = format_paired(rows)
    assert lines[2] == '| a | none (spunet) | 0,1 | -0.2 ± 0.6 | 1 of 2 |'
    assert lines[3] == '| b | none (spunet) | 0,1 | +4.7 ± 1.5 | 2 of 2 |'
    assert lines[4] == '| c | none (spunet) | 0 | +0.7 | 1 of 1 |'
    notes = [ln for ln in lines if ln.startswith('note:')]
    assert len(notes) == 2
    assert notes[0].startswith('note: a against none (spunet): the '
                               'difference (-0.2 ± 0.6')
    assert 'within one standard deviation' in notes[0]
    assert notes[1].startswith('note: c against none (spunet): one seed')
    # no scratch run, nothing to pair
    assert paired([r for r in runs if r['protocol'] != 'scratch']) == []
    assert format_paired([]) == []


def test_a_row_at_the_majority_floor_is_warned():
    from dbbd.apis.transfer import aggregate, floor_warnings
    runs = [dict(pretrain=p, protocol='fine-tune', family='pointnet',
                 seed=s, labelled='all', mIoU=m, mAcc=0, allAcc=0)
            for p, m in (('at', 0.1), ('above', 0.1001)) for s in (0, 1)]
    floors = [dict(floor='majority', family='pointnet', seed=s, mIoU=0.1,
                   majority_class='wall') for s in (0, 1)]
    rows = aggregate(runs)
    lines = floor_warnings(rows, floors)
    assert len(lines) == 1 and lines[0].startswith('warning: at fine-tune')
    assert [r['below_majority'] for r in rows] == [True, False]
    # the floor of another family does not count
    other = [dict(f, family='spunet', mIoU=0.5) for f in floors]
    assert floor_warnings(aggregate(runs), other) == []


def test_command_line_options_reach_the_spec():
    from tools.transfer import parse_args, spec_from_args
    args = parse_args([
        '--pretrain-configs', DEMO, 'none:spunet', '--seeds', '0', '2',
        '--protocols', 'lin', 'scratch', '--seg-configs',
        'configs/scans/seg_{family}_scans_{protocol}.py', '--epochs', '3',
        '--pretrain-epochs', '2', '--labelled-scenes', '2',
        '--labelled-points', '20', '--probe-max-points', '5000',
        '--probe-steps', '50', '--probe-device', 'cpu',
        '--progress-interval', '10', '--jobs', '3', '--work-dir', 'w',
        '--cfg-options',
        'data_root=d', '--pretrain-cfg-options', 'a=1',
        '--seg-cfg-options', 'b=[1,2]'])
    spec = spec_from_args(args)
    assert spec.pretrain_configs == [DEMO, 'none:spunet']
    assert spec.seeds == [0, 2] and spec.protocols == ['lin', 'scratch']
    assert spec.seg_config('scratch', 'spunet') == \
        'configs/scans/seg_spunet_scans_scratch.py'
    assert (spec.epochs, spec.pretrain_epochs, spec.labelled_scenes,
            spec.labelled_points) == (3, 2, 2, 20)
    assert (spec.probe_max_points, spec.probe_steps, spec.probe_device,
            spec.progress_interval) == (5000, 50, 'cpu', 10.0)
    assert spec.jobs == 3
    assert spec.cfg_options == {'data_root': 'd'}
    assert spec.pretrain_cfg_options == {'a': 1}
    assert spec.seg_cfg_options == {'b': [1, 2]}
    default = spec_from_args(parse_args([]))
    assert default.protocols == ['lin', 'ft', 'scratch'] and default.jobs == 1
    assert default.seg_config('ft', 'pointnet') == \
        'configs/dbbd/seg_pointnet_small_demo_ft.py'


@pytest.mark.parametrize('config, family', [
    ('configs/dbbd/dbbd_small_demo.py', 'pointnet'),
    ('configs/dbbd/dbbd_spunet_small_demo.py', 'spunet'),
    ('configs/scene_contrast/scene_contrast_spunet_small_demo.py', 'spunet'),
    ('configs/self_distill/self_distill_spunet_small_demo.py', 'spunet'),
    ('configs/scans/dbbd_spunet_scans.py', 'spunet'),
    ('configs/dbbd/dbbd_ptv3_small_demo.py', 'ptv3'),
    ('configs/scene_contrast/scene_contrast_ptv3_small_demo.py', 'ptv3'),
    ('configs/dbbd/seg_ptv3_small_demo_ft.py', 'ptv3'),
])
def test_backbone_family_of_each_method(config, family):
    """The family names the segmentation configs a pre-training fits:
    seg_{family}_... (a SpUNet or a PTv3 inside DBBD's tree counts as
    that backbone)."""
    from dbbd.apis.transfer import backbone_family
    repo = os.path.dirname(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    assert backbone_family(os.path.join(repo, config), {}) == family


def test_backbone_check_accepts_an_encoder_only_pre_training():
    """SelfDistill reads its SpUNet encoder-only (readout='upcast'); the
    weights are the full SpUNet's and load into the fine-tune's UNet, so
    the transfer runs it. Other widths are refused before any run."""
    from dbbd.apis.transfer import TransferError, check_backbones
    distill = osp.join(REPO, 'configs', 'self_distill',
                       'self_distill_spunet_small_demo.py')
    seg = osp.join(REPO, 'configs', 'dbbd', 'seg_spunet_small_demo_ft.py')
    check_backbones(distill, seg, {}, {})
    with pytest.raises(TransferError, match='differs from that of'):
        check_backbones(distill, seg, {}, {'model.backbone.base_channels': 8})


@pytest.mark.parametrize('size', ['small_demo', 'small_scannet', 'scannet'])
def test_self_distill_ptv3_students_fit_the_ptv3_fine_tunes(size):
    """SelfDistill on PTv3 at each size: the student's backbone has the
    names and shapes of the PTv3 fine-tune's (built on the meta device),
    and the transfer tool pairs the two."""
    import torch
    from mmengine.config import Config

    from dbbd.apis.transfer import check_backbones
    from dbbd.registry import MODELS
    distill = osp.join(REPO, 'configs', 'self_distill',
                       f'self_distill_ptv3_{size}.py')
    seg = osp.join(REPO, 'configs', 'dbbd', f'seg_ptv3_{size}_ft.py')
    check_backbones(distill, seg, {}, {})
    shapes = []
    for path in (distill, seg):
        cfg = Config.fromfile(path).model
        cfg.pop('pretrained', None)
        with torch.device('meta'):
            model = MODELS.build(cfg)
        shapes.append({k: v.shape for k, v in model.state_dict().items()
                       if k.startswith('backbone.')})
    assert shapes[0] == shapes[1] and len(shapes[0]) > 100


class _TimedTrainer:
    """FakeTrainer runs that take 0.4 s each and record when they ran
    (the fake's own work, which builds models in this process, one at a
    time)."""

    def __init__(self, fail=None):
        self.fake = FakeTrainer()
        self.spans = {}
        self.fail = fail
        self.lock = threading.Lock()

    def labels(self):
        return self.fake.labels()

    def __call__(self, config, work_dir, opts, log_path, label,
                 max_epochs=None):
        from dbbd.apis.train_runs import TrainRunError
        start = time.monotonic()
        if label == self.fail:
            self.failed_at = start
            raise TrainRunError(f'{label} failed (exit status 1, log '
                                f'{log_path}): boom')
        time.sleep(0.4)
        with self.lock:
            seconds = self.fake(config, work_dir, opts, log_path, label,
                                max_epochs)
        self.spans[(label, opts['randomness.seed'])] = (start,
                                                        time.monotonic())
        return seconds


def _same(rows):
    return [{k: v for k, v in r.items() if k not in ('seconds', 'work_dir')}
            for r in rows]


def test_jobs_run_side_by_side_and_give_the_same_table(make_spec, tmp_path):
    serial, serial_lines = _run(make_spec(seeds=[0, 1]), FakeTrainer())
    trainer = _TimedTrainer()
    result, lines = _run(make_spec(seeds=[0, 1], jobs=2,
                                   work_dir=str(tmp_path / 'jobs2')),
                         trainer)
    # the same runs, rows and floors, in the same order
    assert sorted(trainer.labels()) == sorted(
        ['pre-training', 'fine-tune', 'scratch'] * 2)
    for key in ('transfer', 'floors', 'runs', 'floor_runs'):
        assert _same(result[key]) == _same(serial[key]), key
    assert lines[lines.index(next(ln for ln in lines if ln.startswith(
        '| pre-training |'))):-1] == serial_lines[serial_lines.index(next(
            ln for ln in serial_lines if ln.startswith('| pre-training |'))
        ):-1]
    # a fine-tune waited for its own pre-training; some runs overlapped
    spans = trainer.spans
    for seed in (0, 1):
        assert spans[('fine-tune', seed)][0] >= \
            spans[('pre-training', seed)][1]
    assert any(a[0] < b[1] and b[0] < a[1]
               for a, b in itertools.combinations(spans.values(), 2)), spans
    # every line of a task names it; the head says how many at once
    assert 'up to 2 runs at once' in lines[0]
    assert 'seed 1, dbbd_small_demo: fine-tune: mIoU 31.00' in ' '.join(
        lines)
    assert not any(ln == 'seed 0, dbbd_small_demo:' for ln in lines)


def test_jobs_stop_at_the_first_failure(make_spec):
    from dbbd.apis.transfer import TransferError, run_transfer
    trainer = _TimedTrainer(fail='scratch')
    with pytest.raises(TransferError, match='scratch failed') as err:
        run_transfer(make_spec(seeds=[0, 1], jobs=2), trainer=trainer,
                     out=lambda line: None)
    assert '\n' not in str(err.value)
    # nothing started after seed 0's scratch failed (seed 1's runs come
    # after it in the plan); what was running was let finish
    assert all(start < trainer.failed_at
               for start, _ in trainer.spans.values()), trainer.spans
    assert all(seed == 0 for _, seed in trainer.spans)
    assert 'pre-training' in trainer.labels()


@pytest.mark.parametrize('jobs', [1, 2])
def test_a_failed_pretraining_is_one_line(make_spec, jobs):
    from dbbd.apis.transfer import TransferError, run_transfer
    with pytest.raises(TransferError, match='pre-training failed') as err:
        run_transfer(make_spec(jobs=jobs), trainer=_TimedTrainer(
            fail='pre-training'), out=lambda line: None)
    assert '\n' not in str(err.value) and 'boom' in str(err.value)
