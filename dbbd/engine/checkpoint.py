"""Safe checkpoint loading and crash-safe file writes.

Loading: every checkpoint is read with ``torch.load(..., weights_only=True)``
and an allow-list of exactly the non-tensor objects that mmengine 0.10.7
puts in a checkpoint (``CheckpointHook`` / ``Runner.save_checkpoint``):

- ``meta``: strings, numbers, dicts (plus DBBD's format version and model
  config, see :mod:`dbbd.engine.hooks.checkpoint_hook`);
- ``message_hub``: ``HistoryBuffer`` objects holding numpy arrays, the
  statistic methods those buffers pickle as ``getattr(HistoryBuffer,
  'mean')``, and numpy scalars for logged metric values (``best_score``);
- ``optimizer`` / ``param_schedulers``: plain state dicts of tensors and
  numbers.

Importing :mod:`dbbd.engine` (importing this module imports it first)
registers :func:`load_from_local_safe` as mmengine's loader for local paths
(:func:`dbbd.engine.checkpoint_sources.register_safe_loader`), so
``Runner.resume``, ``load_from`` and ``mmengine.runner.load_checkpoint`` all
go through it. A refused object or a damaged file fails with one line that
names the file and what is wrong.

Writing: :func:`atomic_write_text`, :func:`atomic_torch_save` and
:func:`commit_file` write to a temporary file in the destination folder,
``fsync`` it and ``os.replace`` it onto the final name, so a crash leaves
either the old file or the complete new one, never a partial file under the
final name.
"""
import errno
import logging
import os
import os.path as osp
import pickle
import re
import shutil
import zipfile
from typing import Any, Callable, List, Optional, Tuple, Union

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import CheckpointLoader

from dbbd.utils.fs import fsync_dir

__all__ = [
    'CHECKPOINT_FORMAT_VERSION', 'CheckpointLoadError',
    'UnsafeCheckpointError', 'CorruptCheckpointError', 'CheckpointWriteError',
    'is_disk_full', 'no_space_error', 'safe_globals_list',
    'load_checkpoint_safe', 'load_from_local_safe',
    'find_latest_checkpoint', 'check_archive', 'tmp_path_for',
    'commit_file', 'atomic_write_text', 'atomic_torch_save',
    'atomic_npy_save', 'fsync_dir'
]

#: Written to ``meta['dbbd_format_version']`` of every checkpoint saved by
#: ``SafeCheckpointHook``. Bump it when the checkpoint layout changes in a
#: way a loader has to know about.
CHECKPOINT_FORMAT_VERSION = 1

#: Suffix of the temporary files the atomic writers use; a leftover one is a
#: write that was interrupted and can be deleted.
TMP_SUFFIX = '.dbbd-tmp'


class CheckpointLoadError(RuntimeError):
    """A checkpoint could not be loaded; the message is one line that names
    the file."""


class UnsafeCheckpointError(CheckpointLoadError):
    """The checkpoint refers to an object outside DBBD's allow-list."""


class CorruptCheckpointError(CheckpointLoadError):
    """The checkpoint file is truncated or not a checkpoint at all."""


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (the disk is full); the message is
    one line naming the file, the space needed and the space free. The
    previous checkpoints are intact."""


def _size(n: float) -> str:
    for unit in ('B', 'KB', 'MB', 'GB'):
        if n < 1024 or unit == 'GB':
            return f'{n:.0f} {unit}' if unit == 'B' else f'{n:.1f} {unit}'
        n /= 1024
    return f'{n:.1f} TB'  # pragma: no cover


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk (or the user's quota) is full."""
    return isinstance(err, OSError) and err.errno in (errno.ENOSPC,
                                                       errno.EDQUOT)


def no_space_error(path: str, need: int) -> CheckpointWriteError:
    """The one-line error for a full disk while writing ``path``, about
    ``need`` bytes."""
    folder = osp.dirname(osp.abspath(path))
    try:
        free = _size(shutil.disk_usage(folder).free)
    except OSError:
        free = 'an unknown amount'
    if find_latest_checkpoint(folder, strict=False):
        then = ('and resume with --resume; the previous checkpoints are '
                'intact')
    else:
        then = 'and run again; no checkpoint had been saved yet'
    err = CheckpointWriteError(
        f'no space left on the device for {path}: it needs about '
        f'{_size(need)} and {free} is free in {folder}; free some space (or '
        f'use another --work-dir) {then}')
    err.errno = errno.ENOSPC
    return err


# ---------------------------------------------------------------------------
# Allow-list
# ---------------------------------------------------------------------------

# The statistic methods ``HistoryBuffer._set_default_statistics`` registers.
# A buffer pickles its ``statistics_methods`` dict, and pickle protocol 2
# (torch.save's) writes a method with a dotted qualname such as
# ``HistoryBuffer.mean`` as ``getattr(HistoryBuffer, 'mean')``. Statistics a
# user adds with ``HistoryBuffer.register_statistics`` are functions defined
# elsewhere; they show up under their own name and are refused.
HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


class _ForbiddenGetattr(Exception):
    """Raised by :func:`_restricted_getattr`; turned into
    :class:`UnsafeCheckpointError` by :func:`load_checkpoint_safe`."""

    def __init__(self, obj: Any, name: Any):
        self.obj_desc = getattr(obj, '__qualname__', type(obj).__qualname__)
        self.name = name
        super().__init__(f'getattr({self.obj_desc}, {name!r})')


def _restricted_getattr(obj: Any, name: Any, *default: Any) -> Any:
    """Stand-in bound to ``builtins.getattr`` while a checkpoint is loaded.

    The real ``getattr`` on the allow-list would let a crafted file fetch any
    attribute of any allowed object (``getattr(HistoryBuffer,
    '__init_subclass__')``, a module's functions, ...) and call it. Only the
    statistic methods of ``HistoryBuffer`` are ever pickled this way by
    mmengine, so only those are returned.
    """
    if (obj is HistoryBuffer and not default and isinstance(name, str)
            and name in HISTORY_BUFFER_STATISTICS):
        return getattr(HistoryBuffer, name)
    raise _ForbiddenGetattr(obj, name)


def _numpy_multiarray():
    """numpy's ``multiarray`` module without touching the deprecated
    ``numpy.core`` alias on numpy 2 (importing it warns)."""
    try:
        from numpy._core import multiarray  # numpy >= 2 (and 1.26 shims)
    except ImportError:  # numpy < 1.26
        from numpy.core import multiarray
    return multiarray


# Every numeric and boolean dtype: one of them describes each logged value
# and history array. Object, string and void dtypes are left out on purpose.
_DTYPE_CODES = '?bBhHiIlLqQefdgFDG'


def _numpy_globals() -> List[Tuple[Any, str]]:
    """``(object, pickled name)`` pairs for the numpy objects in a
    checkpoint, under both numpy 1.x (``numpy.core``) and 2.x
    (``numpy._core``) module paths so a checkpoint written under either
    loads under either."""
    multiarray = _numpy_multiarray()
    pairs: List[Tuple[Any, str]] = []
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        pairs.append((multiarray._reconstruct, f'{module}._reconstruct'))
        pairs.append((multiarray.scalar, f'{module}.scalar'))
    pairs.append((np.ndarray, 'numpy.ndarray'))
    pairs.append((np.dtype, 'numpy.dtype'))
    # A dtype is pickled as ``numpy.dtype('f8', ...)`` and then rebuilt with
    # ``__setstate__``; the unpickler only allows that BUILD step when the
    # concrete class (``numpy.dtypes.Float64DType`` on numpy 2,
    # ``numpy.dtype[float64]`` on 1.x) is allowed too. Derive the classes
    # from the dtype codes so both numpy generations are covered.
    seen = set()
    for code in _DTYPE_CODES:
        cls = type(np.dtype(code))
        if cls in seen:
            continue
        seen.add(cls)
        pairs.append((cls, f'{cls.__module__}.{cls.__qualname__}'))
    return pairs


def safe_globals_list() -> List[Union[Callable, Tuple[Any, str]]]:
    """The allow-list passed to ``torch.serialization.safe_globals``.

    Returns:
        list: ``(object, "module.qualname")`` pairs. Everything else a
        checkpoint may hold (tensors, ``OrderedDict``, builtin containers
        and numbers, ``_codecs.encode``) is on PyTorch's default list.
    """
    pairs: List[Union[Callable, Tuple[Any, str]]] = [
        (HistoryBuffer, 'mmengine.logging.history_buffer.HistoryBuffer'),
        (_restricted_getattr, 'builtins.getattr'),
    ]
    pairs.extend(_numpy_globals())
    return pairs


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    line = text.splitlines()[0].strip() if text else ''
    return f'{type(err).__name__}: {line}' if line else type(err).__name__


def _refused_globals(path: str, err: BaseException) -> List[str]:
    """Names of the globals in ``path`` that are not allowed, read statically
    (nothing in the file is run). Must be called inside the
    ``safe_globals`` context so DBBD's own entries count as allowed."""
    try:
        return sorted(
            torch.serialization.get_unsafe_globals_in_checkpoint(path))
    except Exception:
        # Legacy (pre-zip) files cannot be scanned; torch's error text names
        # the first offending global.
        match = re.search(r'GLOBAL (\S+)', str(err))
        return [match.group(1)] if match else []


#: How every checkpoint ``torch.save`` writes since PyTorch 1.6 starts (a
#: zip archive's first local file header).
ZIP_MAGIC = b'PK\x03\x04'
#: How a legacy (pre-1.6, ``_use_new_zipfile_serialization=False``) torch
#: file starts: its magic number, pickled with protocol 2.
LEGACY_MAGIC = pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2)

_CHUNK = 1 << 20


def _corrupt(shown: str, what: str) -> 'CorruptCheckpointError':
    err = CorruptCheckpointError(
        f'checkpoint {shown} is truncated or corrupt ({what}); use an '
        'earlier checkpoint')
    err.reason = what  # the damage alone, for messages of other callers
    return err


def check_archive(path: str, name: Optional[str] = None) -> bool:
    """Check that ``path`` is a whole torch checkpoint before unpickling it.

    A zip archive (``torch.save`` since 1.6) must open, hold a ``data.pkl``
    record, and every record must match the CRC-32 the archive stores for
    it: a single flipped bit in tensor data is caught here, with the name of
    the record. Reads the whole file once. A legacy (pre-1.6) torch file
    has no checksums and passes as is (:func:`load_checkpoint_safe` logs
    :func:`legacy_format_warning` for it).

    Args:
        path (str): the file.
        name (str, optional): how the message names it. Defaults to
            ``path``.

    Returns:
        bool: True for a zip archive, False for a legacy torch file.

    Raises:
        CorruptCheckpointError: empty, neither format, no ``data.pkl``, a
            damaged zip directory or a record failing its CRC. One line
            naming the file (and the record).
    """
    shown = name or path
    with open(path, 'rb') as f:
        head = f.read(len(LEGACY_MAGIC))
    if head == LEGACY_MAGIC:
        return False
    if not head.startswith(ZIP_MAGIC):
        raise _corrupt(shown, 'an empty file' if not head else
                       'not a torch checkpoint: neither a zip archive nor a '
                       'legacy torch file')
    record = None
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if not any(i.filename.rsplit('/', 1)[-1] == 'data.pkl'
                       for i in infos):
                raise _corrupt(shown, 'no data.pkl record')
            for info in infos:
                record = info.filename
                # ZipExtFile compares the CRC-32 when the record ends
                with zf.open(info) as member:
                    while member.read(_CHUNK):
                        pass
    except CorruptCheckpointError:
        raise
    except Exception as e:  # BadZipFile, zlib.error, EOFError, OSError, ...
        where = f'record {record}' if record else 'the zip directory'
        raise _corrupt(shown,
                       f'{where} is damaged: {_first_line(e)}') from None
    return True


def legacy_format_warning(shown: str) -> str:
    """The one line logged when a checkpoint in PyTorch's legacy (pre-1.6)
    format is loaded: that format stores no checksums, so damage to its
    tensor bytes cannot be detected (a damaged pickle still can)."""
    return (f'checkpoint {shown} is in PyTorch\'s legacy (pre-1.6) format, '
            'which stores no checksums: a damaged byte in its tensor data '
            'would load unnoticed (only zip checkpoints, which torch.save '
            'writes since 1.6 and DBBD always writes, are checked record by '
            'record); save it again with a current torch to get them')


def load_checkpoint_safe(path: Union[str, os.PathLike],
                         map_location: Any = 'cpu',
                         name: Optional[str] = None) -> Any:
    """Load a checkpoint without running code from it.

    Args:
        path (str | PathLike): local checkpoint file.
        map_location: as for :func:`torch.load` (device string,
            ``torch.device``, dict or callable). Defaults to ``'cpu'``.
        name (str, optional): how messages name the checkpoint (the address
            a downloaded file came from, say). Defaults to ``path``.

    Returns:
        The object saved in the file, usually a dict with ``meta``,
        ``state_dict``, ``message_hub``, ``optimizer`` and
        ``param_schedulers``.

    Raises:
        FileNotFoundError: the file does not exist.
        UnsafeCheckpointError: the file refers to an object outside the
            allow-list (it could run code when unpickled).
        CorruptCheckpointError: the file is empty, truncated, damaged (a
            record failing its CRC-32, see :func:`check_archive`) or not a
            checkpoint; whatever the unpickler raises on such bytes.
        CheckpointLoadError: the file is fine but cannot be loaded here (a
            CUDA ``map_location`` without a GPU).
    """
    path = os.fspath(path)
    shown = name or path
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint {shown} does not exist')
    is_zip = check_archive(path, shown)
    if not is_zip:
        from mmengine.logging import print_log
        print_log(legacy_format_warning(shown), logger='current',
                  level=logging.WARNING)
    # A context rather than a global ``add_safe_globals``: the allow-list,
    # and above all the getattr stand-in, apply to this load only.
    with torch.serialization.safe_globals(safe_globals_list()):
        try:
            return torch.load(
                path, map_location=map_location, weights_only=True)
        except _ForbiddenGetattr as e:
            raise UnsafeCheckpointError(
                f'checkpoint {shown} calls getattr({e.obj_desc}, '
                f"{e.name!r}), which is not on DBBD's allow-list; refusing to "
                'load it (it could run code)') from None
        except pickle.UnpicklingError as e:
            refused = _refused_globals(path, e)
            if refused:
                names = ', '.join(f'`{n}`' for n in refused)
                verb = 'is' if len(refused) == 1 else 'are'
                raise UnsafeCheckpointError(
                    f'checkpoint {shown} refers to {names}, which {verb} not '
                    "on DBBD's allow-list; refusing to load it (it could "
                    'run code)') from None
            raise _corrupt(shown, _first_line(e)) from None
        except Exception as e:
            # A verified archive failing on the device (a CUDA map_location
            # without a GPU) is not damage.
            text = str(e)
            if is_zip and isinstance(e, RuntimeError) and (
                    'CUDA' in text or 'device' in text):
                raise CheckpointLoadError(
                    f'checkpoint {shown} could not be loaded: '
                    f'{_first_line(e)}') from e
            # Whatever the unpickler raises on bytes that are not a
            # checkpoint (IndexError, KeyError, struct.error, EOFError,
            # ValueError, ...)
            raise _corrupt(shown, _first_line(e)) from None


def load_from_local_safe(filename: str, map_location: Any = None) -> Any:
    """mmengine ``CheckpointLoader`` backend for local paths (prefix
    ``''``), replacing mmengine's ``load_from_local``. Its name makes
    mmengine log "Loads checkpoint by local_safe backend"."""
    return load_checkpoint_safe(osp.expanduser(filename), map_location)


def _latest_checkpoint_error(save_file: str, what: str) -> CheckpointLoadError:
    return CheckpointLoadError(
        f'{save_file} {what}; give the checkpoint to resume from with '
        '--resume PATH (resume=True, load_from=PATH), or delete '
        f'{osp.basename(save_file)} to start afresh')


def find_latest_checkpoint(work_dir: str,
                           strict: bool = True) -> Optional[str]:
    """Path of the checkpoint ``work_dir/last_checkpoint`` points to.

    ``SafeCheckpointHook`` writes that path relative to the work dir (so a
    copied work dir points to its own files). An absolute path, as
    mmengine's ``CheckpointHook`` writes, is accepted when it lies inside
    the work dir, or when the work dir holds a file of the same name (a
    work dir copied from where that path was written).

    Args:
        work_dir (str): the work dir.
        strict (bool): raise when ``last_checkpoint`` is unusable; with
            False return None instead (for messages that only mention the
            latest checkpoint).

    Returns:
        str | None: absolute path of an existing file inside ``work_dir``;
        None when there is no ``last_checkpoint``.

    Raises:
        CheckpointLoadError: ``last_checkpoint`` is empty or unreadable,
            holds an address (``http://...``), names a file outside the
            work dir, or names a file that does not exist. One line.
    """
    save_file = osp.join(work_dir, 'last_checkpoint')
    if not osp.exists(save_file):
        return None
    try:
        try:
            with open(save_file, encoding='utf-8') as f:
                last = f.read().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise _latest_checkpoint_error(
                save_file, f'cannot be read ({_first_line(e)})') from None
        if not last:
            raise _latest_checkpoint_error(save_file, 'is empty')
        if '\n' in last or '://' in last:
            raise _latest_checkpoint_error(
                save_file, f'holds {last.splitlines()[0]!r}, not the name of '
                'a checkpoint file in the work dir; DBBD only resumes from '
                'files inside the work dir')
        work = osp.abspath(work_dir)
        path = osp.normpath(osp.join(work, last))
        if osp.isabs(last) and not _is_within(path, work):
            # an absolute path written before the work dir was copied
            local = osp.join(work, osp.basename(last))
            path = local if osp.isfile(local) else path
        if not _is_within(path, work):
            raise _latest_checkpoint_error(
                save_file, f'names {last}, outside the work dir {work}; '
                'DBBD only resumes from files inside the work dir')
        if not osp.isfile(path):
            raise _latest_checkpoint_error(
                save_file, f'names {last}, which does not exist')
        return path
    except CheckpointLoadError:
        if strict:
            raise
        return None


def _is_within(path: str, folder: str) -> bool:
    """Whether ``path`` is ``folder`` or lies below it (symlinks
    resolved)."""
    path, folder = osp.realpath(path), osp.realpath(folder)
    try:
        return osp.commonpath([path, folder]) == folder
    except ValueError:  # different drives on Windows
        return False


# ---------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------


def tmp_path_for(path: str) -> str:
    """Temporary name for ``path``: hidden, in the same folder (so
    ``os.replace`` is a rename on one filesystem), ending in ``.dbbd-tmp``.
    """
    folder, name = osp.split(path)
    return osp.join(folder, f'.{name}{TMP_SUFFIX}')



def _remove_quietly(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def commit_file(tmp_path: str, path: str) -> None:
    """``fsync`` a finished temporary file and rename it onto ``path``."""
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp_path, path)
    fsync_dir(osp.dirname(path))


def _atomic_write(path: str, mode: str, write: Callable) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, make it
    durable, then rename it onto ``path``: readers see the old or the new
    file, never a mix; a failure leaves no temporary file."""
    tmp = tmp_path_for(path)
    try:
        with open(tmp, mode, **({} if 'b' in mode else
                                dict(encoding='utf-8'))) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(osp.dirname(path))
    except BaseException:
        _remove_quietly(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`_atomic_write`)."""
    _atomic_write(path, 'w', lambda f: f.write(text))


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` through a temporary file and a rename."""
    _atomic_write(path, 'wb', lambda f: torch.save(obj, f))


def atomic_npy_save(path: str, array: np.ndarray) -> None:
    """``np.save`` (no pickle) through a temporary file and a rename."""
    _atomic_write(path, 'wb',
                  lambda f: np.save(f, np.asarray(array), allow_pickle=False))
