"""The Runner ``tools/train.py`` and ``tools/test.py`` build, and what they
do when the disk is full.

:class:`DBBDRunner` is mmengine's ``Runner`` with its copy of the config
written atomically (a full disk leaves the previous copy or none, never a
truncated one). :func:`disk_full_stops` makes a log handler that cannot
write because the disk is full raise its ``OSError`` instead of printing
``--- Logging error ---`` and a traceback for every record, so the tool
stops with :func:`disk_full_message`'s one line.
"""
import contextlib
import copy
import logging
import os.path as osp
import sys

from mmengine.config import Config
from mmengine.dist import master_only
from mmengine.runner import Runner

from .checkpoint import (_size, atomic_write_text, find_latest_checkpoint,
                         is_disk_full)

__all__ = ['DBBDRunner', 'FormatOnceConfig', 'QuietDBBDRunner', 'disk_full_stops',
           'disk_full_message', 'SETUP_DUMP_STARTS']

#: How the records of mmengine's set-up dump start: the environment, the
#: whole config, the SyncBN notice and the hook table (about 420 lines
#: before the first training line).
SETUP_DUMP_STARTS = (
    '\n' + '-' * 60 + '\nSystem environment:',
    'Config:\n',
    'Distributed training is not used, all SyncBatchNorm',
    'Hooks will be executed in the following order:',
)


class _NoSetupDump(logging.Filter):
    """Drops mmengine's set-up dump (:data:`SETUP_DUMP_STARTS`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.msg if isinstance(record.msg, str) else ''
        return not msg.startswith(SETUP_DUMP_STARTS)


class FormatOnceConfig(Config):
    """mmengine's ``Config`` whose ``pretty_text`` is formatted once per
    content.

    mmengine formats the whole config with yapf (about half a second on a
    2-core CPU) each time it asks for the text: the set-up log, the message
    hub, the visualiser, the config copy and every checkpoint, eight times
    in a one-epoch run. Here the text is kept with the content it was made
    from and made again only when the config has changed since.
    """

    @property
    def pretty_text(self) -> str:
        key = repr(self._cfg_dict.to_dict())
        cached = self.__dict__.get('_formatted')
        if cached is None or cached[0] != key:
            cached = (key, Config.pretty_text.fget(self))
            # Config.__setattr__ would store it as a config key
            object.__setattr__(self, '_formatted', cached)
        return cached[1]

    @classmethod
    def of(cls, cfg: Config) -> 'FormatOnceConfig':
        """A shallow copy of ``cfg`` of this class (same content)."""
        if isinstance(cfg, cls):
            return cfg
        other = copy.copy(cfg)
        object.__setattr__(other, '__class__', cls)
        return other


class DBBDRunner(Runner):
    """mmengine's Runner; the config copy in the work dir is written to a
    temporary file and renamed.

    ``quiet_console`` (class attribute, see :class:`QuietDBBDRunner`): keep
    mmengine's set-up dump (environment, config, hook table) out of the
    console; the log file in the work dir still has all of it.
    """

    quiet_console = False

    @classmethod
    def from_cfg(cls, cfg: Config) -> 'DBBDRunner':
        return super().from_cfg(FormatOnceConfig.of(cfg))

    def build_logger(self, *args, **kwargs):
        logger = super().build_logger(*args, **kwargs)
        if self.quiet_console:
            for handler in logger.handlers:
                if isinstance(handler, logging.StreamHandler) and \
                        not isinstance(handler, logging.FileHandler) and \
                        not any(isinstance(f, _NoSetupDump)
                                for f in handler.filters):
                    handler.addFilter(_NoSetupDump())
        return logger

    @property
    def log_file(self) -> str:
        """The log file of this run (the whole output, set-up dump
        included)."""
        return osp.join(self.log_dir, f'{self.timestamp}.log')

    @master_only
    def dump_config(self) -> None:
        if self.cfg.filename is not None:
            filename = osp.basename(self.cfg.filename)
        else:
            filename = f'{self.timestamp}.py'
        path = osp.join(self.work_dir, filename)
        try:
            atomic_write_text(path, self.cfg.dump())
        except OSError as e:
            if is_disk_full(e) and not e.filename:
                raise OSError(e.errno, e.strerror, path) from None
            raise


class QuietDBBDRunner(DBBDRunner):
    """:class:`DBBDRunner` whose console leaves out the set-up dump."""

    quiet_console = True


@contextlib.contextmanager
def disk_full_stops():
    """Within: a logging handler whose write fails because the disk is full
    raises that ``OSError`` (through the logging call) instead of printing
    a traceback and going on; other handler errors as before."""
    original = logging.Handler.handleError

    def handle_error(self, record):
        err = sys.exc_info()[1]
        if is_disk_full(err):
            name = getattr(self, 'baseFilename', None)
            if name and not err.filename:
                raise OSError(err.errno, err.strerror, name) from None
            raise err
        original(self, record)

    logging.Handler.handleError = handle_error
    try:
        yield
    finally:
        logging.Handler.handleError = original


def disk_full_message(err: OSError, work_dir: str) -> str:
    """One line for a disk that filled up outside a checkpoint write (the
    log, the config copy, TensorBoard's files): where, how much is free,
    and what is on disk to resume from."""
    import shutil
    folder = osp.abspath(work_dir)
    where = err.filename if getattr(err, 'filename', None) else \
        'the log, the config copy or the TensorBoard files'
    try:
        free = f'{_size(shutil.disk_usage(folder).free)} is free'
    except OSError:
        free = 'the free space is unknown'
    latest = find_latest_checkpoint(folder, strict=False)
    then = (f'then resume with --resume (the checkpoints are intact, '
            f'latest: {latest})' if latest else
            'then run again (no checkpoint had been saved yet)')
    return (f'no space left on the device while writing {where} in the '
            f'work dir {folder} ({free}); free some space or give another '
            f'--work-dir, {then}')
