"""SIGKILL ``tools/train.py`` mid-epoch, inside a validation, between a
checkpoint and its validation, and mid-checkpoint-write, then ``--resume``:
the run finishes, nothing truncated sits under a final checkpoint name, and
the final weights, the best checkpoint, the early-stopping state and the
logged history equal those of an uninterrupted run (a crash costs time,
never results).

The fault points are test-only hooks (``tests/helpers/dbbd_faults.py``)
loaded into the subprocess through ``custom_imports`` / ``custom_hooks`` of
a child config: they write a marker file when reached and sleep until
killed.
"""
import glob
import os
import os.path as osp
import re

import pytest
import torch

import dbbd_faults

EPOCHS = 3
TIMEOUT = 180  # per subprocess


def _cfg(tmp_path, demo_root, hooks=()):
    name = 'fault.py' if hooks else 'cfg.py'
    return dbbd_faults.write_config(tmp_path / name, demo_root,
                                    max_epochs=EPOCHS, custom_hooks=hooks)


def _last_checkpoint(work):
    with open(osp.join(work, 'last_checkpoint')) as f:
        return f.read().strip()


def _final_checkpoints(work):
    return sorted(glob.glob(osp.join(work, '*.pth')))  # hidden tmp excluded


def _assert_all_final_files_load(work):
    """Every file under a final checkpoint name is a complete checkpoint."""
    from dbbd.engine import load_checkpoint_safe
    files = _final_checkpoints(work)
    assert files
    for path in files:
        ckpt = load_checkpoint_safe(path)
        assert ckpt['state_dict'], path
    return files


def _kill_at_fault(tmp_path, demo_root, hook, work, tag='killed',
                   resume=False):
    """Start training (``--resume`` when ``resume``) with ``hook``, wait
    for its marker, SIGKILL the process group. Returns (marker text, log
    text)."""
    marker = str(tmp_path / f'marker_{tag}')
    hook = dict(hook, marker=marker)
    cfg = _cfg(tmp_path, demo_root, hooks=[hook])
    log = str(tmp_path / f'{tag}.log')
    args = ['--work-dir', work] + (['--resume'] if resume else [])
    proc = dbbd_faults.start_train(log, cfg, *args)
    try:
        text = dbbd_faults.wait_for_marker(proc, marker, log,
                                           timeout=TIMEOUT)
    finally:
        dbbd_faults.kill_group(proc)
    assert proc.returncode == -9, proc.returncode  # killed, not exited
    with open(log, errors='replace') as f:
        return text, f.read()


def _val_pending(work, name):
    from dbbd.engine import load_checkpoint_safe
    return load_checkpoint_safe(osp.join(work, name))['meta'][
        'dbbd_val_pending']


def _resume_and_check(tmp_path, demo_root, work, reference, from_epoch=1):
    """``--resume`` (without the fault hook) to the end; check the run
    against the uninterrupted ``reference``."""
    from dbbd.engine import find_latest_checkpoint, load_checkpoint_safe
    from dbbd.engine.checkpoint import TMP_SUFFIX
    r = dbbd_faults.run_train(_cfg(tmp_path, demo_root), '--work-dir', work,
                              '--resume', timeout=TIMEOUT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert f'resumed epoch: {from_epoch}' in out.lower()
    assert f'Epoch(train) [{from_epoch}]' not in out
    if from_epoch < EPOCHS:
        assert f'Epoch(train) [{EPOCHS}]' in out

    # the right final epoch
    assert _last_checkpoint(work) == f'epoch_{EPOCHS}.pth'
    assert find_latest_checkpoint(work) == osp.join(
        osp.abspath(work), f'epoch_{EPOCHS}.pth')
    final = load_checkpoint_safe(osp.join(work, f'epoch_{EPOCHS}.pth'))
    assert final['meta']['epoch'] == EPOCHS
    assert final['meta']['dbbd_val_pending'] is False
    # nothing truncated under a final name, no temporary file left
    files = _assert_all_final_files_load(work)
    assert not [f for f in os.listdir(work) if f.endswith(TMP_SUFFIX)]
    # exactly one best checkpoint, loadable, the one the hub names, and
    # the one the uninterrupted run ended with
    best = [f for f in files if osp.basename(f).startswith('best_loss_')]
    assert len(best) == 1, files
    assert load_checkpoint_safe(best[0])['state_dict']
    assert final['message_hub']['runtime_info']['best_ckpt'] == \
        osp.basename(best[0])
    ref_best = glob.glob(osp.join(reference, 'best_loss_*.pth'))
    assert [osp.basename(b) for b in best] == [
        osp.basename(b) for b in ref_best]
    # nothing lost: the weights of the uninterrupted run, bit for bit ...
    ref = load_checkpoint_safe(osp.join(reference, f'epoch_{EPOCHS}.pth'))
    assert set(final['state_dict']) == set(ref['state_dict'])
    for k, v in ref['state_dict'].items():
        assert torch.equal(final['state_dict'][k], v), k
    # ... its early-stopping state, best score and every logged value
    assert final['meta']['early_stopping'] == ref['meta']['early_stopping']
    assert final['message_hub']['runtime_info']['best_score'] == \
        ref['message_hub']['runtime_info']['best_score']
    assert dbbd_faults.read_scalars(work) == dbbd_faults.read_scalars(
        reference)
    # the same checkpoints are kept (max_keep_ckpts, best rotation)
    assert [osp.basename(f) for f in files] == [
        osp.basename(f) for f in _final_checkpoints(reference)]
    return out


@pytest.fixture(scope='module')
def reference(demo_root, tmp_path_factory):
    """An uninterrupted run of the same config."""
    tmp = tmp_path_factory.mktemp('kill_reference')
    work = str(tmp / 'work')
    r = dbbd_faults.run_train(_cfg(tmp, demo_root), '--work-dir', work,
                              timeout=TIMEOUT)
    assert r.returncode == 0, r.stderr[-3000:]
    return work


def test_killed_four_times_then_resumed_ends_as_uninterrupted(
        demo_root, tmp_path, reference):
    """One work dir, killed at four points, then finished (one chain, so
    each kill costs one subprocess):

    1. mid-epoch 2 (iteration 1 of epoch 2 has run and was logged, its
       weights are in memory only);
    2. resumed, half-way through writing ``epoch_2.pth``;
    3. resumed (the temporary file is cleared, epoch 2 is trained again),
       inside epoch 2's validation: ``epoch_2.pth`` is on disk, its
       validation has not finished;
    4. resumed (epoch 2's validation runs first), after ``epoch_3.pth`` of
       the last epoch was written and before its validation started;
    5. resumed to the end: epoch 3's validation runs, nothing is trained.
    """
    from dbbd.engine import CorruptCheckpointError, load_checkpoint_safe
    from dbbd.engine.checkpoint import TMP_SUFFIX
    work = str(tmp_path / 'work')
    _, log = _kill_at_fault(
        tmp_path, demo_root,
        dict(type='PauseAtIterHook', epoch=2, batch_idx=1), work, 'mid')
    assert 'Epoch(train) [2][1/2]' in log
    assert _last_checkpoint(work) == 'epoch_1.pth'
    assert not osp.exists(osp.join(work, 'epoch_2.pth'))
    _assert_all_final_files_load(work)

    text, log = _kill_at_fault(
        tmp_path, demo_root,
        dict(type='PauseInCheckpointWriteHook', epoch=2, occurrence=1),
        work, 'in_write', resume=True)
    assert 'resumed epoch: 1' in log.lower()
    partial, total = text.split()
    # the kill landed while the temporary file was half written ...
    assert osp.basename(partial) == f'.epoch_2.pth{TMP_SUFFIX}'
    assert osp.getsize(partial) == int(total) // 2 > 0
    with pytest.raises(CorruptCheckpointError):
        load_checkpoint_safe(partial)
    # ... and nothing under a final name is partial
    assert not osp.exists(osp.join(work, 'epoch_2.pth'))
    assert _last_checkpoint(work) == 'epoch_1.pth'
    _assert_all_final_files_load(work)

    _, log = _kill_at_fault(
        tmp_path, demo_root,
        dict(type='PauseInValidationHook', epoch=2, batch_idx=0), work,
        'in_val', resume=True)
    assert 'resumed epoch: 1' in log.lower()
    assert f'Removed .epoch_2.pth{TMP_SUFFIX}' in log
    assert _last_checkpoint(work) == 'epoch_2.pth'
    assert _val_pending(work, 'epoch_2.pth') is True
    # killed before epoch 2's validation result was logged
    assert not re.search(r'Epoch\(val\) \[2\]\S*\s+val/loss', log)

    _, log = _kill_at_fault(
        tmp_path, demo_root, dict(type='PauseInValidationHook', epoch=3),
        work, 'before_val', resume=True)
    assert 'resumed epoch: 2' in log.lower()
    assert ('epoch_2.pth was saved before its validation finished' in log)
    assert log.index('Epoch(val) [2]') < log.index('Epoch(train) [3]')
    assert _val_pending(work, 'epoch_2.pth') is False
    assert _last_checkpoint(work) == 'epoch_3.pth'
    assert _val_pending(work, 'epoch_3.pth') is True

    out = _resume_and_check(tmp_path, demo_root, work, reference,
                            from_epoch=3)
    assert 'epoch_3.pth was saved before its validation finished' in out
    assert 'Epoch(val) [3]' in out and 'Epoch(train)' not in out
