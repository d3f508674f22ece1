"""One run per work dir: the run lock is held by a real process, refused
to a second one with its PID, and released by the OS when the holder is
killed."""
import os
import os.path as osp
import signal
import subprocess
import sys

import pytest

from dbbd.engine import run_lock
from dbbd.engine.run_lock import (LOCK_NAME, WorkDirLockedError,
                                  acquire_work_dir_lock,
                                  release_work_dir_lock)

# A bare interpreter that takes the lock and waits (loads run_lock.py by
# path: no torch import, so it starts in milliseconds).
HOLDER = '''
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location('run_lock', sys.argv[1])
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
mod.acquire_work_dir_lock(sys.argv[2])
print('held', flush=True)
time.sleep(120)
'''


@pytest.fixture
def holder(tmp_path):
    work = str(tmp_path / 'work')
    proc = subprocess.Popen(
        [sys.executable, '-c', HOLDER, run_lock.__file__, work],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'held'
        yield proc, work
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()


def test_second_process_is_refused_until_the_holder_is_killed(holder):
    proc, work = holder
    with pytest.raises(WorkDirLockedError) as info:
        acquire_work_dir_lock(work)
    msg = str(info.value)
    assert '\n' not in msg
    assert msg.startswith(f'work dir {work} is in use by another training '
                          f'run (PID {proc.pid} on ')
    assert msg.endswith('give this run another --work-dir')
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    # the OS released it with the process: no stale lock
    assert acquire_work_dir_lock(work) is True
    assert acquire_work_dir_lock(work) is False  # re-entrant in a process
    with open(osp.join(work, LOCK_NAME)) as f:
        assert f.read().startswith(f'pid {os.getpid()} ')
    release_work_dir_lock(work)


def test_a_runner_in_a_held_work_dir_stops_before_training(
        holder, make_toy_runner):
    proc, work = holder
    runner = make_toy_runner(work)
    with pytest.raises(WorkDirLockedError, match=f'PID {proc.pid} '):
        runner.train()
    assert not [n for n in os.listdir(work) if n.endswith('.pth')]


def test_a_run_releases_the_lock_when_it_ends(tmp_path, make_toy_runner):
    work = str(tmp_path / 'work')
    make_toy_runner(work, max_epochs=1).train()
    # another process could take it now
    proc = subprocess.Popen(
        [sys.executable, '-c', HOLDER, run_lock.__file__, work],
        stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == 'held'
    finally:
        proc.kill()
        proc.wait(timeout=30)
        proc.stdout.close()
