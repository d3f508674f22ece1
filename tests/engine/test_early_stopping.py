"""``ResumableEarlyStoppingHook``: the early-stopping state goes into
checkpoints, a stopped run stays stopped on resume, and a resume in the
middle continues counting exactly where the run was."""
import hashlib
import math
import os
import os.path as osp

import pytest
from mmengine.config import Config

from dbbd.engine import ResumableEarlyStoppingHook
from dbbd.engine.checkpoint import load_checkpoint_safe
from dbbd.registry import HOOKS
from toy_runner import IterCounter, ckpt_files, is_plain, read_log

# Validation losses: best 3.0, then 2.0 (better by more than min_delta),
# then 1.95 and 1.99 (not better by 0.1): with patience 2 training stops
# after the validation of epoch 4.
VALUES = [3.0, 2.0, 1.95, 1.99]


def es_hook(**kw):
    cfg = dict(type='ResumableEarlyStoppingHook', monitor='loss',
               rule='less', min_delta=0.1, patience=2)
    cfg.update(kw)
    return cfg


def es_of(runner):
    return next(h for h in runner.hooks
                if isinstance(h, ResumableEarlyStoppingHook))


def digests(folder):
    out = {}
    for name in ckpt_files(folder):
        with open(osp.join(folder, name), 'rb') as f:
            out[name] = hashlib.sha256(f.read()).hexdigest()
    return out


@pytest.fixture(scope='module')
def stopped_run(tmp_path_factory):
    """Trained until early stopping at epoch 4 of 10, checkpoints every 3
    epochs (so epoch 4 has no regular checkpoint of its own)."""
    from toy_runner import build_toy_runner
    work_dir = str(tmp_path_factory.mktemp('stopped'))
    counter = IterCounter()
    runner = build_toy_runner(
        work_dir, max_epochs=10, values=VALUES,
        checkpoint=dict(type='dbbd.SafeCheckpointHook', interval=3),
        custom_hooks=[es_hook(), counter])
    runner.train()
    return dict(work_dir=work_dir, runner=runner, counter=counter)


def test_stops_and_saves_the_stop(stopped_run):
    work_dir = stopped_run['work_dir']
    assert stopped_run['counter'].epochs == 4
    # save_last does not fire after an early stop: the hook saved epoch 4
    assert ckpt_files(work_dir) == ['epoch_3.pth', 'epoch_4.pth']
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        assert f.read().strip() == 'epoch_4.pth'

    ckpt = load_checkpoint_safe(osp.join(work_dir, 'epoch_4.pth'))
    assert ckpt['meta']['epoch'] == 4 and ckpt['meta']['iter'] == 16
    state = ckpt['meta']['early_stopping']
    assert is_plain(state)
    assert state['stopped'] is True and state['stop_kind'] == 'patience'
    assert state['wait_count'] == 2 and state['best_score'] == 2.0
    assert state['stopped_at'] == dict(epoch=4, iter=16)
    assert (state['monitor'], state['rule']) == ('loss', 'less')


def test_checkpoint_written_before_validation_gets_the_new_state(
        stopped_run):
    # epoch_3.pth is written before epoch 3's validation, which raised the
    # wait count to 1; the hook re-wrote it so a resume from it knows.
    state = load_checkpoint_safe(
        osp.join(stopped_run['work_dir'],
                 'epoch_3.pth'))['meta']['early_stopping']
    assert state['wait_count'] == 1 and state['stopped'] is False
    assert state['best_score'] == 2.0


def test_resume_of_a_stopped_run_stays_stopped(stopped_run, tmp_path,
                                               make_toy_runner):
    import shutil
    work_dir = str(tmp_path / 'wd')
    shutil.copytree(stopped_run['work_dir'], work_dir)
    before = digests(work_dir)
    counter = IterCounter()
    runner = make_toy_runner(
        work_dir, max_epochs=10, values=[0.5],
        checkpoint=dict(type='dbbd.SafeCheckpointHook', interval=3),
        custom_hooks=[es_hook(), counter], resume=True)
    runner.train()
    assert counter.iters == 0 and runner.epoch == 4
    assert digests(work_dir) == before  # nothing trained, nothing saved
    assert es_of(runner).stopped and es_of(runner).wait_count == 2
    log = read_log(runner)
    assert log.count('it stays stopped, no further epochs are trained') == 1


def test_control_mmengines_hook_would_train_on(stopped_run, tmp_path,
                                               make_toy_runner):
    """A control of mmengine's behaviour, not of DBBD's: the same resume
    with mmengine's EarlyStoppingHook trains again (exactly the one epoch
    up to the new max_epochs), which is the bug this hook fixes."""
    import shutil
    work_dir = str(tmp_path / 'wd')
    shutil.copytree(stopped_run['work_dir'], work_dir)
    counter = IterCounter()
    runner = make_toy_runner(
        work_dir, max_epochs=5, values=[0.5],
        checkpoint=dict(type='dbbd.SafeCheckpointHook', interval=3),
        custom_hooks=[es_hook(type='EarlyStoppingHook'), counter],
        resume=True)
    runner.train()
    # epoch 5 (4 iterations of 2 of the 8 samples) after the stop at 4
    assert (counter.epochs, counter.iters, runner.epoch) == (1, 4, 5)
    assert 'epoch_5.pth' in ckpt_files(work_dir)


def test_larger_patience_lets_a_stopped_run_continue(stopped_run, tmp_path,
                                                     make_toy_runner):
    import shutil
    work_dir = str(tmp_path / 'wd')
    shutil.copytree(stopped_run['work_dir'], work_dir)
    counter = IterCounter()
    runner = make_toy_runner(
        work_dir, max_epochs=5, values=[0.5],
        checkpoint=dict(type='dbbd.SafeCheckpointHook', interval=3),
        custom_hooks=[es_hook(patience=5), counter], resume=True)
    runner.train()
    assert counter.epochs == 1 and runner.epoch == 5
    assert 'settings let it continue' in read_log(runner)
    hook = es_of(runner)
    assert not hook.stopped and hook.best_score == 0.5


def test_load_from_without_resume_starts_afresh(stopped_run, tmp_path,
                                                make_toy_runner):
    counter = IterCounter()
    runner = make_toy_runner(
        tmp_path, max_epochs=1, values=[9.0],
        custom_hooks=[es_hook(), counter],
        load_from=osp.join(stopped_run['work_dir'], 'epoch_4.pth'))
    runner.train()
    assert counter.epochs == 1
    hook = es_of(runner)
    assert not hook.stopped and hook.wait_count == 0
    assert hook.best_score == 9.0


def test_resume_mid_run_continues_exactly(tmp_path, make_toy_runner):
    """Interrupted after epoch 3 and resumed, the run stops at the same
    epoch as the uninterrupted one: the wait count of epoch 3's validation
    was not lost."""
    values = [3.0, 2.0, 1.95, 1.99, 1.98, 1.97, 1.96]
    ckpt = dict(type='dbbd.SafeCheckpointHook', interval=1)
    full = make_toy_runner(
        tmp_path / 'full', max_epochs=10, values=values, checkpoint=ckpt,
        custom_hooks=[es_hook(patience=3)])
    full.train()
    assert full.epoch == 5

    part = str(tmp_path / 'part')
    make_toy_runner(
        part, max_epochs=3, values=values, checkpoint=ckpt,
        custom_hooks=[es_hook(patience=3)]).train()
    resumed = make_toy_runner(
        part, max_epochs=10, values=values[3:], checkpoint=ckpt,
        custom_hooks=[es_hook(patience=3)], resume=True)
    resumed.train()
    assert resumed.epoch == full.epoch == 5
    state = load_checkpoint_safe(osp.join(
        part, 'epoch_5.pth'))['meta']['early_stopping']
    assert state['stopped'] and state['wait_count'] == 3


def test_state_is_plain_and_round_trips():
    hook = ResumableEarlyStoppingHook(monitor='loss', patience=3)
    state = hook.state_dict()
    assert is_plain(state) and math.isinf(state['best_score'])
    hook.best_score, hook.wait_count = 1.5, 2
    other = ResumableEarlyStoppingHook(monitor='loss', patience=3)
    other.load_state_dict(hook.state_dict())
    assert (other.best_score, other.wait_count) == (1.5, 2)


def test_default_runtime_uses_it():
    cfg = Config.fromfile(
        osp.join(osp.dirname(__file__), os.pardir, os.pardir, 'configs',
                 '_base_', 'default_runtime.py'))
    types = [h['type'] for h in cfg.custom_hooks]
    assert 'ResumableEarlyStoppingHook' in types
    assert 'EarlyStoppingHook' not in types
    hooks = [HOOKS.build(h) for h in cfg.custom_hooks]
    es = next(h for h in hooks if isinstance(h, ResumableEarlyStoppingHook))
    assert es.patience == 5 and es.min_delta == -1e-3


def test_standalone_validation_neither_decides_nor_saves(tmp_path,
                                                        make_toy_runner):
    runner = make_toy_runner(tmp_path, values=[float('nan')],
                             custom_hooks=[es_hook()])
    runner.val()  # a NaN would stop a training run (check_finite)
    hook = es_of(runner)
    assert not hook.stopped and math.isinf(hook.best_score)
    assert ckpt_files(tmp_path) == []
