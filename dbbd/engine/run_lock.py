"""One training run per work dir.

Two runs started in the same work dir write the same checkpoint names, the
same temporary files and the same ``last_checkpoint``: one run's
checkpoints silently replace the other's, or both fail. A run therefore
holds an exclusive ``flock`` on ``<work_dir>/.dbbd-run.lock`` for its whole
length. The operating system releases it when the process ends, however it
ends (a ``SIGKILL``ed run never leaves it held), and the file records the
holder's PID, host and start time so the second run can say who has it.

``tools/train.py`` takes the lock (on rank 0) before it builds anything;
``SafeCheckpointHook`` takes it in ``before_run`` for runs started from
Python, unless this process already holds it. Only this module's standard
library imports are needed, so a test can hold a lock from a bare
interpreter.
"""
import os
import os.path as osp
import socket
import time
from typing import Dict

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows: no flock, no lock)
    fcntl = None

__all__ = [
    'LOCK_NAME', 'WorkDirLockedError', 'acquire_work_dir_lock',
    'release_work_dir_lock'
]

LOCK_NAME = '.dbbd-run.lock'

# realpath of a work dir -> descriptor holding its lock, in this process
_held: Dict[str, int] = {}


class WorkDirLockedError(RuntimeError):
    """Another run holds the work dir; the message is one line naming its
    PID."""


def _holder(fd: int) -> str:
    try:
        text = os.pread(fd, 256, 0).decode('utf-8', 'replace')
    except OSError:
        text = ''
    fields = dict(zip(text.split()[::2], text.split()[1::2]))
    if 'pid' not in fields:
        return 'PID unknown, it is just starting'
    where = f" on {fields['host']}" if 'host' in fields else ''
    since = f", started {fields['started']}" if 'started' in fields else ''
    return f"PID {fields['pid']}{where}{since}"


def acquire_work_dir_lock(work_dir: str) -> bool:
    """Take the work dir's run lock, without waiting.

    Args:
        work_dir (str): the run's work dir (created if missing).

    Returns:
        bool: True when this call took the lock, False when this process
        already held it (or the file system has no locks, where nothing
        can be done).

    Raises:
        WorkDirLockedError: another process holds it.
    """
    if fcntl is None:
        return False
    key = osp.realpath(work_dir)
    if key in _held:
        return False
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK_NAME)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise WorkDirLockedError(
            f'work dir {work_dir} is in use by another training run '
            f'({holder}); wait for it to end, or give this run another '
            '--work-dir') from None
    except OSError:  # no lock support (some network file systems)
        os.close(fd)
        return False
    stamp = time.strftime('%Y-%m-%dT%H:%M:%S')
    os.ftruncate(fd, 0)
    os.pwrite(fd, f'pid {os.getpid()} host {socket.gethostname()} '
              f'started {stamp}\n'.encode(), 0)
    _held[key] = fd
    return True


def release_work_dir_lock(work_dir: str) -> None:
    """Release a lock :func:`acquire_work_dir_lock` took (no-op
    otherwise). The file stays: removing it would let two runs lock two
    different files of the same name."""
    fd = _held.pop(osp.realpath(work_dir), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
