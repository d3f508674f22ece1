"""SIGKILL ``tools/train.py`` mid-epoch and mid-checkpoint-write, then
``--resume``: the run finishes, nothing truncated sits under a final
checkpoint name, the best checkpoint loads, and the final weights equal
those of an uninterrupted run (a crash costs time, never results).

The fault points are test-only hooks (``tests/helpers/dbbd_faults.py``)
loaded into the subprocess through ``custom_imports`` / ``custom_hooks`` of
a child config: they write a marker file when reached and sleep until
killed.
"""
import glob
import os
import os.path as osp

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


def _kill_at_fault(tmp_path, demo_root, hook, work):
    """Start training with ``hook``, wait for its marker, SIGKILL the
    process group. Returns (marker text, log text)."""
    marker = str(tmp_path / 'marker')
    hook = dict(hook, marker=marker)
    cfg = _cfg(tmp_path, demo_root, hooks=[hook])
    log = str(tmp_path / 'killed.log')
    proc = dbbd_faults.start_train(log, cfg, '--work-dir', work)
    try:
        text = dbbd_faults.wait_for_marker(proc, marker, log,
                                           timeout=TIMEOUT)
    finally:
        dbbd_faults.kill_group(proc)
    assert proc.returncode == -9, proc.returncode  # killed, not exited
    with open(log, errors='replace') as f:
        return text, f.read()


def _resume_and_check(tmp_path, demo_root, work, reference):
    """``--resume`` (without the fault hook) to the end; check the run."""
    from dbbd.engine import find_latest_checkpoint, load_checkpoint_safe
    from dbbd.engine.checkpoint import TMP_SUFFIX
    r = dbbd_faults.run_train(_cfg(tmp_path, demo_root), '--work-dir', work,
                              '--resume', timeout=TIMEOUT)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert 'resumed epoch: 1' in out.lower()
    assert 'Epoch(train) [1]' not in out
    assert f'Epoch(train) [{EPOCHS}]' in out

    # the right final epoch
    assert _last_checkpoint(work) == f'epoch_{EPOCHS}.pth'
    assert find_latest_checkpoint(work) == osp.join(
        osp.abspath(work), f'epoch_{EPOCHS}.pth')
    final = load_checkpoint_safe(osp.join(work, f'epoch_{EPOCHS}.pth'))
    assert final['meta']['epoch'] == EPOCHS
    # nothing truncated under a final name, no temporary file left
    files = _assert_all_final_files_load(work)
    assert not [f for f in os.listdir(work) if f.endswith(TMP_SUFFIX)]
    # exactly one best checkpoint, loadable, the one the hub names
    best = [f for f in files if osp.basename(f).startswith('best_loss_')]
    assert len(best) == 1, files
    assert load_checkpoint_safe(best[0])['state_dict']
    assert final['message_hub']['runtime_info']['best_ckpt'] == \
        osp.basename(best[0])
    # nothing lost: the weights of the uninterrupted run, bit for bit
    ref = load_checkpoint_safe(osp.join(reference, f'epoch_{EPOCHS}.pth'))
    assert set(final['state_dict']) == set(ref['state_dict'])
    for k, v in ref['state_dict'].items():
        assert torch.equal(final['state_dict'][k], v), k
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


def test_kill_mid_epoch_then_resume(demo_root, tmp_path, reference):
    work = str(tmp_path / 'work')
    # killed before iteration 2 of epoch 2: iteration 1 of epoch 2 has run
    # and was logged, its weights are in memory only
    _, log = _kill_at_fault(
        tmp_path, demo_root,
        dict(type='PauseAtIterHook', epoch=2, batch_idx=1), work)
    assert 'Epoch(train) [2][1/2]' in log
    assert _last_checkpoint(work) == 'epoch_1.pth'
    assert not osp.exists(osp.join(work, 'epoch_2.pth'))
    _assert_all_final_files_load(work)

    _resume_and_check(tmp_path, demo_root, work, reference)


@pytest.mark.parametrize(
    'epoch, occurrence, name',
    [
        (2, 1, 'epoch_2.pth'),  # a regular checkpoint
        # the best checkpoint's atomic write is covered, without a
        # subprocess, in tests/engine/test_checkpoint.py
    ])
def test_kill_mid_checkpoint_write_then_resume(demo_root, tmp_path,
                                               reference, epoch, occurrence,
                                               name):
    from dbbd.engine import CorruptCheckpointError, load_checkpoint_safe
    from dbbd.engine.checkpoint import TMP_SUFFIX
    work = str(tmp_path / 'work')
    text, _ = _kill_at_fault(
        tmp_path, demo_root,
        dict(type='PauseInCheckpointWriteHook', epoch=epoch,
             occurrence=occurrence), work)
    partial, total = text.split()
    # the kill landed while the temporary file was half written ...
    assert osp.basename(partial) == f'.{name}{TMP_SUFFIX}'
    assert osp.getsize(partial) == int(total) // 2 > 0
    with pytest.raises(CorruptCheckpointError):
        load_checkpoint_safe(partial)
    # ... and nothing under a final name is partial
    assert not osp.exists(osp.join(work, name))
    assert _last_checkpoint(work) == 'epoch_1.pth'
    _assert_all_final_files_load(work)

    out = _resume_and_check(tmp_path, demo_root, work, reference)
    assert f'Removed .{name}{TMP_SUFFIX}' in out
