"""File-system helpers shared by scene writing and checkpoint writing."""
import os

__all__ = ['fsync_dir']


def fsync_dir(folder):
    """Persist a rename in ``folder``; a no-op where folders cannot be
    opened or synced (Windows, some file systems)."""
    try:
        fd = os.open(folder or '.', os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
