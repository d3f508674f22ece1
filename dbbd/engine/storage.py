"""Atomic writes for every local file mmengine writes through its storage
backend: checkpoints above all.

mmengine 0.10.7's ``LocalBackend.put`` opens the final name and writes into
it: a crash in the middle leaves a partial checkpoint under its real name
(``Runner.save_checkpoint``, ``CheckpointHook``'s best checkpoints and its
published models all end there). :class:`AtomicLocalBackend` writes the
bytes to a hidden temporary file beside the target
(``.<name>.dbbd-tmp``), checks that a zip archive (a torch checkpoint)
reads back with every record matching its CRC-32, ``fsync`` s it and
renames it onto the final name, so a reader sees the previous file or the
complete new one. A full disk is one line naming the file, the bytes it
needs and the space free.

Importing :mod:`dbbd.engine` registers it as mmengine's backend for local
paths (``register_backend(..., force=True)``, mmengine's own extension
point), the way :mod:`dbbd.engine.checkpoint` registers the safe loader for
reading them.
"""
import os.path as osp
from typing import Union

from mmengine.fileio import register_backend
from mmengine.fileio.backends import LocalBackend

from .checkpoint import (ZIP_MAGIC, CorruptCheckpointError, _remove_quietly,
                         check_archive, commit_file, is_disk_full,
                         no_space_error, tmp_path_for)

__all__ = ['AtomicLocalBackend', 'register_atomic_backend']


class AtomicLocalBackend(LocalBackend):
    """mmengine's ``LocalBackend`` whose ``put`` replaces the file
    atomically (everything else is mmengine's)."""

    def put(self, obj: bytes, filepath: Union[str, 'osp.PathLike']) -> None:
        """Write ``obj`` to ``filepath``: a temporary file, checked (zip
        archives), made durable, renamed. A failure removes the temporary
        file and leaves ``filepath`` as it was."""
        final = str(filepath)
        tmp = tmp_path_for(final)
        try:
            super().put(obj, tmp)  # mmengine's write, to the temporary name
            if bytes(obj[:len(ZIP_MAGIC)]) == ZIP_MAGIC:
                _check_reads_back(tmp, final)
            commit_file(tmp, final)
        except BaseException as e:
            _remove_quietly(tmp)
            if is_disk_full(e):
                raise no_space_error(final, len(obj)) from None
            raise


def _check_reads_back(tmp: str, final: str) -> None:
    try:
        check_archive(tmp, name=final)
    except CorruptCheckpointError as e:
        raise RuntimeError(
            f'the checkpoint written for {final} does not read back ({e}); '
            'it was not committed and the previous checkpoints are '
            'untouched') from None


def register_atomic_backend() -> None:
    """Make :class:`AtomicLocalBackend` mmengine's backend for local paths
    (the name ``'local'`` and the empty prefix). Idempotent."""
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')


register_atomic_backend()
