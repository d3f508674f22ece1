"""``SafeCheckpointHook``: mmengine 0.10.7's ``CheckpointHook`` with its
defects fixed, each by the smallest override that does it.

mmengine 0.10.7's defects, and what fixes each:

- It writes a checkpoint in place: a crash leaves a partial file under the
  final name. Fixed for every local write, published models included, by
  ``AtomicLocalBackend`` (:mod:`dbbd.engine.storage`), not here.
- ``max_keep_ckpts`` deletes the oldest checkpoint before writing the new
  one; ``last_checkpoint`` is written in place, with an absolute path:
  ``_save_checkpoint_with_step``.
- A new best deletes the previous best before writing itself, re-saves the
  regular checkpoint outside the interval, and records absolute paths:
  ``_save_best_checkpoint``.
- Absolute paths in the message hub make a resumed copy of a work dir
  delete the original's files: ``before_train`` (``_resolve_owned``).
- Auto-resume opens ``last_checkpoint``'s content relative to the current
  folder: ``before_run``.
- A kill between a checkpoint and its validation loses that validation
  (best checkpoint, early stopping, history): ``_save_checkpoint``,
  ``after_val``, ``before_train``.
- ``save_last`` misses the epoch where early stopping ended training:
  ``after_train``.
- Weights holding NaN/Inf are saved: ``before_save_checkpoint``.
- ``runner.val()`` alone fails in the best tracking (no checkpoint
  folder): ``after_val_epoch``.
- Two FileClient deprecation lines in every log, from a ``FileClient`` it
  builds and never uses: ``before_run``.

DBBD's own additions: ``meta`` gains ``dbbd_format_version``,
``dbbd_version``, ``model_cfg`` (plain values, loadable with
``weights_only=True``) and ``dbbd_val_pending``; a resumed run deletes what
a run killed between writing and deleting left behind, and the temporary
files of interrupted writes; the run holds the work dir's run lock
(:mod:`dbbd.engine.run_lock`). Paths in the message hub and in
``last_checkpoint`` are relative to the checkpoint folder / work dir.

Only local folders are supported: ``os.replace`` is what makes a write
atomic, and object stores have no equivalent.
"""
import bisect
import inspect
import logging
import os
import os.path as osp
import re
from collections import deque
from typing import Any, Dict, List, Optional

from mmengine.dist import is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from dbbd.registry import HOOKS
from dbbd.version import __version__
from ..checkpoint import (CHECKPOINT_FORMAT_VERSION, TMP_SUFFIX,
                          CheckpointLoadError, _is_within, atomic_write_text,
                          find_latest_checkpoint, is_disk_full,
                          no_space_error)
from ..run_lock import acquire_work_dir_lock, release_work_dir_lock
from ..runner_access import (checkpoint_to_load, resume_requested,
                             set_checkpoint_to_load)
from .nonfinite_loss_hook import (NonFiniteWeightsError, checkpoint_problem,
                                  last_good_checkpoint,
                                  non_finite_optimizer_state,
                                  non_finite_tensors)

__all__ = ['SafeCheckpointHook', 'to_plain']


def to_plain(obj: Any) -> Any:
    """Copy of ``obj`` made only of dict, list, str, int, float, bool and
    None, which ``torch.load(weights_only=True)`` reads without an
    allow-list.

    ``ConfigDict`` becomes dict, tuples and sets become lists, numpy
    scalars become Python numbers, classes and functions (pure-Python
    configs may hold them as ``type=``) become their dotted names, anything
    else its type name.
    """
    if obj is None or type(obj) in (bool, int, float, str):
        return obj
    if isinstance(obj, dict):
        return {str(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, (bool, int, float, str)):
        # A subclass (numpy.float64 is a float) would be pickled as itself.
        return _builtin_copy(obj)
    item = getattr(obj, 'item', None)
    if callable(item) and getattr(obj, 'ndim', None) == 0:
        return to_plain(item())
    if isinstance(obj, type) or inspect.isroutine(obj):
        module = getattr(obj, '__module__', None)
        name = getattr(obj, '__qualname__', None) or obj.__name__
        return f'{module}.{name}' if module else name
    # An instance (say an nn.Module passed as ``model``): its repr can be
    # long, multi-line or unstable, its type name is enough to identify it.
    return f'<{type(obj).__module__}.{type(obj).__qualname__} object>'


def _builtin_copy(obj: Any) -> Any:
    """The builtin value of a bool/int/float/str subclass instance."""
    for base in (bool, int, float, str):
        if isinstance(obj, base):
            return base(obj)
    return obj


def _template_regex(tmpl: str) -> Optional['re.Pattern']:
    """``epoch_(\\d+)\\.pth`` for ``epoch_{}.pth``; None unless the template
    has exactly one field."""
    parts = re.split(r'\{[^{}]*\}', tmpl)
    if len(parts) != 2:
        return None
    return re.compile(re.escape(parts[0]) + r'(\d+)' + re.escape(parts[1]))



class _DropFileClientNotices(logging.Filter):
    """Drops mmengine's two FileClient deprecation lines.

    ``CheckpointHook.before_train`` and ``mmengine.runner.save_checkpoint``
    build a ``FileClient`` even when ``file_client_args`` is None (this
    hook refuses it), use it for nothing, and each construction logs that
    ``FileClient`` and ``HardDiskBackend`` are deprecated: noise in every
    training log that no setting avoids."""

    NOTICES = ('"FileClient" will be deprecated in future.',
               '"HardDiskBackend" is the alias of "LocalBackend"')

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.NOTICES)


_DROP_FILE_CLIENT_NOTICES = _DropFileClientNotices()


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """mmengine's ``CheckpointHook`` (same arguments) with its defects fixed
    (see the module docstring), e.g. in a config::

        default_hooks = dict(checkpoint=dict(
            type='SafeCheckpointHook', interval=10, max_keep_ckpts=3,
            save_best='loss', rule='less'))

    ``file_client_args``, ``backend_args`` and an ``out_dir`` URL are
    refused: writes must go to a local folder to be atomic.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.file_client_args is not None or self.backend_args is not None:
            raise ValueError(
                'SafeCheckpointHook writes atomically with os.replace and '
                'supports local folders only; drop file_client_args / '
                'backend_args')
        if self.out_dir is not None and '://' in str(self.out_dir):
            raise ValueError(
                f'SafeCheckpointHook: out_dir={self.out_dir!r} is not a local '
                'folder; atomic writes need one')
        # Superseded files, deleted once a regular checkpoint that no
        # longer names them is on disk.
        self._removals: List[str] = []
        # (step, meta) of the regular checkpoint saved before a validation
        # that has not finished yet.
        self._pending_val: Optional[tuple] = None
        # epoch / iter of a resumed checkpoint saved before its validation
        self._loaded_pending: Optional[Dict[str, Any]] = None
        # meta['dbbd_val_pending'] and the name of the checkpoint being
        # written
        self._val_pending = False
        self._writing: Optional[str] = None
        # Whether this hook took the work dir's run lock (run_lock).
        self._own_lock = False

    # ------------------------------------------------------------------
    # Before training
    # ------------------------------------------------------------------

    def before_run(self, runner) -> None:
        """Silence the FileClient notices (:class:`_DropFileClientNotices`)
        and resolve ``last_checkpoint`` against the work dir for an
        auto-resume.

        mmengine's auto-resume (``resume=True`` without ``load_from``)
        opens whatever path ``last_checkpoint`` holds relative to the
        current folder; ``Runner.train`` calls ``before_run`` before it
        loads, so naming the resolved file as the checkpoint to load makes
        it take its "resume from this checkpoint" branch instead.
        """
        runner.logger.addFilter(_DROP_FILE_CLIENT_NOTICES)
        if not resume_requested(runner) or checkpoint_to_load(runner):
            return
        # raises (one line) when last_checkpoint is empty, names an
        # address, a file outside the work dir or a missing file
        latest = find_latest_checkpoint(runner.work_dir)
        if latest is not None:
            runner.logger.info(f'Resuming from {latest} (last_checkpoint)')
            set_checkpoint_to_load(runner, latest)

    def before_train(self, runner) -> None:
        """Take the work dir's run lock (``tools/train.py`` already has),
        mmengine's setup, then map message-hub paths into this folder, clear
        what interrupted writes left and run a validation the resumed
        checkpoint is still waiting for."""
        if is_main_process():
            # raises WorkDirLockedError (one line) when another run has it
            self._own_lock = acquire_work_dir_lock(runner.work_dir)
        super().before_train(runner)
        if not isinstance(self.file_backend, LocalBackend):
            raise ValueError(
                f'SafeCheckpointHook: {self.out_dir} is not a local folder; '
                'atomic writes need one')
        self.out_dir = osp.abspath(self.out_dir)
        self._set_best_paths({
            key: self._resolve_owned(path, runner)
            for key, path in self._best_paths().items()
        })
        self._remove_tmp_files(runner)
        self._remove_leftovers(runner)
        self._run_pending_validation(runner)
        self._say_if_complete(runner)

    @staticmethod
    def _say_if_complete(runner) -> None:
        """A resumed run that has already trained every epoch (iteration)
        of ``train_cfg`` trains nothing: say so in one line, and how to
        train longer, rather than end silently."""
        loop = runner.train_loop
        if not resume_requested(runner) or getattr(loop, 'stop_training',
                                                   False):
            return  # early stopping says its own
        if isinstance(loop, EpochBasedTrainLoop):
            done, last, unit = runner.epoch, loop.max_epochs, 'epochs'
        elif isinstance(loop, IterBasedTrainLoop):
            done, last, unit = runner.iter, loop.max_iters, 'iters'
        else:
            return
        if done < last:
            return
        runner.logger.warning(
            f'This run is complete: the resumed checkpoint has trained '
            f'{done} of max_{unit}={last}, so there is nothing to train; to '
            f'train longer, resume with a larger max_{unit} (--resume '
            f'--cfg-options train_cfg.max_{unit}={2 * last}; the cosine '
            f'schedule stretches to the new length)')

    def _remove_tmp_files(self, runner) -> None:
        """Delete the temporary files of interrupted writes."""
        if not is_main_process() or not osp.isdir(self.out_dir):
            return
        for name in os.listdir(self.out_dir):
            if name.startswith('.') and name.endswith(TMP_SUFFIX):
                os.remove(osp.join(self.out_dir, name))
                runner.logger.warning(
                    f'Removed {name}, left by an interrupted checkpoint '
                    'write')

    def _remove_leftovers(self, runner) -> None:
        """Delete what a run killed between writing a checkpoint and
        deleting the ones it replaced left behind: regular checkpoints older
        than every one ``keep_ckpt_ids`` keeps, and best checkpoints of
        earlier steps the message hub no longer names. Rank 0; only names
        this hook writes; nothing newer than the resumed step."""
        regular = _template_regex(self.filename_tmpl)
        if (not is_main_process() or not osp.isdir(self.out_dir)
                or regular is None):
            return
        step = runner.epoch if self.by_epoch else runner.iter
        keep = list(self.keep_ckpt_ids) if self.max_keep_ckpts > 0 else []
        oldest_kept = min(keep) if keep else None
        bests = ({f'best_{k}_'.replace('/', '_') for k in self.key_indicators}
                 if self.save_best is not None else set())
        current = {osp.basename(p) for p in self._best_paths().values() if p}
        for name in sorted(os.listdir(self.out_dir)):
            match = regular.fullmatch(name)
            stale = (match is not None and oldest_kept is not None
                     and self.filename_tmpl.format(int(match[1])) == name
                     and int(match[1]) < oldest_kept)
            for prefix in bests:
                match = (regular.fullmatch(name[len(prefix):])
                         if name.startswith(prefix) else None)
                if match and int(match[1]) <= step and name not in current:
                    stale = True
            if stale:
                self._remove_owned(osp.join(self.out_dir, name), runner)

    # ------------------------------------------------------------------
    # Regular checkpoints and the validation that follows them
    # ------------------------------------------------------------------

    def _save_checkpoint(self, runner) -> None:
        """mmengine's (this epoch's / iteration's checkpoint), marked
        ``meta['dbbd_val_pending'] = True`` when a validation follows.

        The marked file is written again, unmarked, once that validation
        and every hook acting on its result (best checkpoint, early
        stopping) are done (:meth:`after_val`). A run killed in between
        resumes from the marked file and runs the validation first
        (:meth:`_run_pending_validation`): the validation is never lost.
        """
        if self.by_epoch:
            step = runner.epoch + 1
            meta = dict(epoch=step, iter=runner.iter)
        else:
            step = runner.iter + 1
            meta = dict(epoch=runner.epoch, iter=step)
        self._save_checkpoint_with_step(
            runner, step, meta,
            val_pending=self._validation_follows(runner, step))

    def _validation_follows(self, runner, step: int) -> bool:
        """Whether the train loop validates right after completing epoch /
        iteration ``step``: the test mmengine's ``EpochBasedTrainLoop`` and
        ``IterBasedTrainLoop`` make, dynamic intervals included. False for
        other loops."""
        loop = runner.train_loop
        if runner.val_loop is None:
            return False
        if isinstance(loop, EpochBasedTrainLoop) and self.by_epoch:
            last = loop.max_epochs
        elif isinstance(loop, IterBasedTrainLoop) and not self.by_epoch:
            last = loop.max_iters
        else:
            return False
        # the loops pick the interval with step + 1 (mmengine's choice)
        interval = loop.dynamic_intervals[
            bisect.bisect(loop.dynamic_milestones, step + 1) - 1]
        return step >= loop.val_begin and (step % interval == 0
                                           or step == last)

    def _save_checkpoint_with_step(self, runner, step, meta,
                                   val_pending: bool = False) -> None:
        """mmengine's, reordered: write ``filename_tmpl.format(step)``, then
        ``last_checkpoint`` (atomically, relative to the work dir), and only
        then delete the checkpoints they supersede. mmengine deleted the
        oldest kept checkpoint first and wrote ``last_checkpoint`` in
        place, with an absolute path, so a crash between the two steps left
        no valid checkpoint."""
        hub = runner.message_hub
        stale: List[int] = []
        if self.max_keep_ckpts > 0 and list(self.keep_ckpt_ids)[-1:] != [
                step
        ]:  # a checkpoint completed after its validation is counted
            ids = list(self.keep_ckpt_ids) + [step]
            stale, ids = (ids[:-self.max_keep_ckpts],
                          ids[-self.max_keep_ckpts:])
            self.keep_ckpt_ids = deque(ids, self.max_keep_ckpts)
            # recorded in the checkpoint itself
            hub.update_info('keep_ckpt_ids', ids)
        filename = self.filename_tmpl.format(step)
        hub.update_info('last_ckpt', filename)
        self._val_pending, self._writing = val_pending, filename
        try:
            runner.save_checkpoint(
                self.out_dir,
                filename,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                **self.args)
        finally:
            self._val_pending, self._writing = False, None
        self.last_ckpt = osp.join(self.out_dir, filename)
        self._pending_val = (step, meta) if val_pending else None
        if not is_main_process():  # rank 0 owns the files
            self._removals = []
            return
        save_file = osp.join(runner.work_dir, 'last_checkpoint')
        try:
            atomic_write_text(save_file,
                              osp.relpath(self.last_ckpt, runner.work_dir))
        except OSError as e:
            if is_disk_full(e):
                raise no_space_error(save_file, 4096) from None
            raise
        self._removals += [
            osp.join(self.out_dir, self.filename_tmpl.format(s))
            for s in stale
        ]
        self._flush_removals(runner)

    def after_val(self, runner) -> None:
        """Complete the checkpoint saved before this validation."""
        if getattr(self, 'file_backend', None) is not None:  # training
            self._complete_pending(runner)

    def before_train_epoch(self, runner) -> None:
        # a validation that was expected did not come (a loop that decides
        # otherwise): the checkpoint must not stay marked
        self._complete_pending(runner, expected=False)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        if self._pending_val is not None:
            self._complete_pending(runner, expected=False)

    def _complete_pending(self, runner, expected: bool = True) -> None:
        if self._pending_val is None:
            return
        step, meta = self._pending_val
        if not expected:
            runner.logger.warning(
                f'No validation followed {self.filename_tmpl.format(step)}; '
                'saving it as complete')
        self._save_checkpoint_with_step(runner, step, meta)

    def _run_pending_validation(self, runner) -> None:
        """Resuming from a checkpoint saved before its validation finished:
        run that validation now, before training goes on (an uninterrupted
        run had run it there)."""
        loaded, self._loaded_pending = self._loaded_pending, None
        if loaded is None or (runner.epoch, runner.iter) != (
                loaded.get('epoch'), loaded.get('iter')):
            return
        step = runner.epoch if self.by_epoch else runner.iter
        name = self.filename_tmpl.format(step)
        if runner.val_loop is None:
            runner.logger.warning(
                f'{name} was saved before its validation ran, and this '
                'config has no validation; training goes on without it')
            return
        runner.logger.info(
            f'{name} was saved before its validation finished (the run '
            'stopped in between); running that validation now')
        self._pending_val = (step, dict(epoch=runner.epoch,
                                        iter=runner.iter))
        runner.val_loop.run()

    # ------------------------------------------------------------------
    # Best checkpoints
    # ------------------------------------------------------------------

    def after_val_epoch(self, runner, metrics) -> None:
        """mmengine's best tracking, in a training run only: a standalone
        ``runner.val()`` has no checkpoint folder set up (mmengine fails
        there) and nothing to save."""
        if getattr(self, 'file_backend', None) is not None:
            super().after_val_epoch(runner, metrics)

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """mmengine's, with three of its defects worked around:

        - it deletes the previous best before writing the new one: the
          previous best is hidden from it (``best_ckpt_path`` None) and
          deleted once a regular checkpoint recording the new best is on
          disk (or training ends);
        - with ``last_ckpt`` set, it re-saves this step's regular checkpoint
          at every new best, at the interval or not: ``last_ckpt`` is hidden
          too. The checkpoint saved before this validation is completed
          after it (:meth:`after_val`), recording the new best; without one
          the next regular checkpoint records it;
        - it records absolute paths in the message hub: made relative.
        """
        if not self.save_best:
            return
        previous = self._best_paths()
        self._set_best_paths(dict.fromkeys(previous))
        last_ckpt, self.last_ckpt = self.last_ckpt, None
        self._writing = 'the new best checkpoint'
        try:
            super()._save_best_checkpoint(runner, metrics)
        finally:
            self.last_ckpt, self._writing = last_ckpt, None
        current = self._best_paths()
        for key, path in current.items():
            old = previous.get(key)
            if path is None:  # no new best for this metric
                current[key] = old
                continue
            runner.message_hub.update_info(key, osp.basename(path))
            if old and osp.normpath(old) != osp.normpath(path):
                self._removals.append(old)
        self._set_best_paths(current)

    def _best_paths(self) -> Dict[str, Optional[str]]:
        """{message-hub key: path} of the best checkpoints (mmengine keeps
        one attribute for a single metric, a dict for several)."""
        if self.save_best is None:
            return {}
        if len(self.key_indicators) == 1:
            return {'best_ckpt': getattr(self, 'best_ckpt_path', None)}
        return {f'best_ckpt_{k}': self.best_ckpt_path_dict.get(k)
                for k in self.key_indicators}

    def _set_best_paths(self, paths: Dict[str, Optional[str]]) -> None:
        if 'best_ckpt' in paths:
            self.best_ckpt_path = paths['best_ckpt']
        for key, path in paths.items():
            if key != 'best_ckpt':
                self.best_ckpt_path_dict[key[len('best_ckpt_'):]] = path

    # ------------------------------------------------------------------
    # End of training
    # ------------------------------------------------------------------

    def after_train(self, runner) -> None:
        """Save the step where training stopped early (``save_last``: it is
        the last step; mmengine only saves the last planned one), delete
        what the last checkpoints superseded, then mmengine's publishing
        (atomic through DBBD's storage backend)."""
        self._complete_pending(runner, expected=False)
        step = runner.epoch if self.by_epoch else runner.iter
        name = self.filename_tmpl.format(step)
        saved = runner.message_hub.runtime_info.get('last_ckpt')
        if (self.save_last and runner.train_loop.stop_training and step > 0
                and (saved is None or osp.basename(saved) != name)):
            runner.logger.info(
                f'Saving checkpoint {name}: training stopped early here')
            self._save_checkpoint_with_step(
                runner, step, dict(epoch=runner.epoch, iter=runner.iter))
        self._flush_removals(runner)
        super().after_train(runner)
        if self._own_lock:
            release_work_dir_lock(runner.work_dir)
            self._own_lock = False

    # ------------------------------------------------------------------
    # Meta and loading
    # ------------------------------------------------------------------

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Refuse weights holding NaN/Inf (mmengine saves them; a resume
        from them can only fail): :class:`NonFiniteWeightsError`, one line.
        Record the DBBD format version, the model config and whether the
        validation after this checkpoint is still to come in ``meta``."""
        state = checkpoint.get('state_dict') or {}
        bad = non_finite_tensors(state)
        if bad:
            message = (
                f'the model weights hold NaN/Inf ({len(bad)} of {len(state)} '
                f'tensors, first: {bad[0]}; is the learning rate too '
                f'large?); {self._writing or "the checkpoint"} was not '
                f'saved; {last_good_checkpoint(runner.work_dir)}')
            runner.logger.error(message)
            raise NonFiniteWeightsError(message)
        # Adam's second moment overflows to inf on a huge (finite) gradient
        # while the weights stay finite: a resume would carry it on
        bad = non_finite_optimizer_state(checkpoint.get('optimizer') or {})
        if bad:
            message = (
                f'the optimizer state holds NaN/Inf ({len(bad)} value(s), '
                f'first: {bad[0]}; a gradient too large for float32? lower '
                f'the learning rate or clip gradients with optim_wrapper.'
                f'clip_grad); {self._writing or "the checkpoint"} was not '
                f'saved; {last_good_checkpoint(runner.work_dir)}')
            runner.logger.error(message)
            raise NonFiniteWeightsError(message)
        meta = checkpoint.setdefault('meta', {})
        meta['dbbd_format_version'] = CHECKPOINT_FORMAT_VERSION
        meta['dbbd_version'] = __version__
        cfg = getattr(runner, 'cfg', None)
        meta['model_cfg'] = to_plain(
            cfg.get('model') if cfg is not None else None)
        meta['dbbd_val_pending'] = bool(self._val_pending)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Note a resumed checkpoint saved before its validation finished;
        warn when the checkpoint comes from a newer DBBD format."""
        if resume_requested(runner):
            problem = checkpoint_problem(checkpoint)
            if problem:
                name = checkpoint_to_load(runner) or 'the checkpoint'
                raise CheckpointLoadError(
                    f'{name} holds non-finite {problem[0]} (first: '
                    f'{problem[1]}); resuming would '
                    'carry it on (NaN weights, or weights that stop '
                    'learning); resume from an earlier checkpoint with '
                    '--resume PATH, or start from its weights alone with '
                    f'--cfg-options load_from={name} (a fresh optimizer)')
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        meta = meta if isinstance(meta, dict) else {}
        self._loaded_pending = None
        if meta.get('dbbd_val_pending') and resume_requested(runner):
            self._loaded_pending = dict(epoch=meta.get('epoch'),
                                        iter=meta.get('iter'))
        version = meta.get('dbbd_format_version')
        if isinstance(version, int) and version > CHECKPOINT_FORMAT_VERSION:
            runner.logger.warning(
                f'The checkpoint has DBBD format version {version}, newer '
                f'than this code\'s {CHECKPOINT_FORMAT_VERSION}; it may not '
                'load correctly')

    # ------------------------------------------------------------------
    # Deleting only what is ours
    # ------------------------------------------------------------------

    def _resolve_owned(self, path: Optional[str],
                       runner) -> Optional[str]:
        """Absolute path, inside ``self.out_dir``, of a checkpoint path read
        from the message hub; None when it points elsewhere.

        Relative names are what this hook stores. An absolute path comes from
        mmengine's ``CheckpointHook`` or an older run: when it lies outside
        this folder (a copied work dir), the file of the same name here is
        this run's copy of it; with no such file it is not ours to delete.
        """
        if not path:
            return None
        if not osp.isabs(path):
            return osp.join(self.out_dir, path)
        if _is_within(path, self.out_dir):
            return osp.normpath(path)
        local = osp.join(self.out_dir, osp.basename(path))
        if osp.exists(local):
            return local
        runner.logger.warning(
            f'The message hub names {path}, outside {self.out_dir}; it will '
            'not be deleted by this run')
        return None

    def _flush_removals(self, runner) -> None:
        """Delete the superseded files, except the checkpoints this run
        still names."""
        names = {osp.normpath(p) for p in [self.last_ckpt,
                                           *self._best_paths().values()]
                 if p}
        for path in self._removals:
            if osp.normpath(path) not in names:
                self._remove_owned(path, runner)
        self._removals = []

    def _remove_owned(self, path: Optional[str], runner) -> None:
        """Delete a checkpoint file of this folder; anything else is left
        alone. Rank 0 only."""
        if not path or not is_main_process():
            return
        if not _is_within(path, self.out_dir):
            runner.logger.warning(
                f'Not deleting {path}: it is outside {self.out_dir}')
            return
        if osp.isfile(path):
            os.remove(path)
            runner.logger.info(f'Removed outdated checkpoint {path}')
        elif osp.isdir(path):
            runner.logger.warning(
                f'Not deleting {path}: a folder, not a checkpoint file')
