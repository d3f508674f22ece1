"""``SafeCheckpointHook``: mmengine's ``CheckpointHook`` with crash-safe
writes, delete-after-write and work-dir-relative paths.

What changes against mmengine 0.10.7's ``CheckpointHook`` (same arguments):

- Every checkpoint goes to a hidden temporary file in the checkpoint folder
  (``Runner.save_checkpoint`` writes it), is checked to be a complete zip
  archive, ``fsync``'d and ``os.replace``'d onto its final name.
  ``last_checkpoint`` is replaced the same way, and only once the
  checkpoint it names is in place.
- Checkpoints beyond ``max_keep_ckpts`` and the previous best are deleted
  only after the new checkpoint, and the regular checkpoint whose message
  hub records it, are on disk. mmengine deletes first, so a crash in
  between left no valid checkpoint. A resumed run deletes what a run killed
  between writing and deleting left behind.
- Regular checkpoints are written at the configured ``interval`` (and
  ``save_last``, which an early stop also triggers) only; mmengine also
  re-saved one at every new best.
- A regular checkpoint written before its validation records
  ``meta['dbbd_val_pending'] = True`` and is written again once the
  validation and every hook acting on it (best checkpoint, early stopping)
  are done. Resuming from a checkpoint still marked runs that validation
  first, so a kill between the two loses nothing.
- Weights holding NaN/Inf are never saved; a full disk is one line naming
  the file and the space needed; the run holds the work dir's run lock
  (:mod:`dbbd.engine.run_lock`).
- The message hub (``last_ckpt``, ``best_ckpt``, ``best_ckpt_<metric>``)
  and ``last_checkpoint`` hold paths relative to the checkpoint folder /
  work dir. Resuming in a copied work dir therefore reads and deletes its
  own files; mmengine's absolute paths made it delete the original's best
  checkpoint. Absolute paths from older checkpoints are mapped into the
  current folder, and nothing outside it is ever deleted.
- ``meta`` gains ``dbbd_format_version``, ``dbbd_version`` and
  ``model_cfg`` (``cfg.model`` as plain dicts, lists, strings and numbers,
  so it loads with ``weights_only=True``).

Only local folders are supported: ``os.replace`` is what makes a write
atomic, and object stores have no equivalent.
"""
import bisect
import hashlib
import inspect
import os
import os.path as osp
import pickle
import re
from collections import deque
from typing import Any, Dict, List, Optional

import torch
from mmengine.dist import is_main_process, master_only
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop

from dbbd.registry import HOOKS
from dbbd.version import __version__
from ..checkpoint import (CHECKPOINT_FORMAT_VERSION, TMP_SUFFIX,
                          CorruptCheckpointError, _is_within,
                          atomic_torch_save, atomic_write_text, check_archive,
                          commit_file, find_latest_checkpoint, is_disk_full,
                          load_checkpoint_safe, no_space_error, tmp_path_for)
from ..run_lock import acquire_work_dir_lock, release_work_dir_lock
from .nonfinite_loss_hook import (NonFiniteWeightsError, last_good_checkpoint,
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


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nest of dicts, lists and tuples."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def _state_bytes(runner) -> int:
    """About how large a regular checkpoint of ``runner`` is: the model's
    and the optimizer's tensors (the rest is small)."""
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    total = _tensor_bytes(model.state_dict())
    try:
        total += _tensor_bytes(runner.optim_wrapper.state_dict())
    except Exception:  # an optimizer wrapper not built yet
        pass
    return total


def _template_regex(tmpl: str) -> Optional['re.Pattern']:
    """``epoch_(\\d+)\\.pth`` for ``epoch_{}.pth``; None unless the template
    has exactly one field."""
    parts = re.split(r'\{[^{}]*\}', tmpl)
    if len(parts) != 2:
        return None
    return re.compile(re.escape(parts[0]) + r'(\d+)' + re.escape(parts[1]))


@HOOKS.register_module()
class SafeCheckpointHook(CheckpointHook):
    """Save checkpoints periodically, atomically, deleting only after
    writing.

    Takes exactly the arguments of mmengine's ``CheckpointHook``, e.g. in a
    config::

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
        # Files to delete once the next regular checkpoint is complete.
        self._pending_removals: List[str] = []
        # (step, meta) of the regular checkpoint saved before a validation
        # that has not finished yet.
        self._pending_val: Optional[tuple] = None
        # meta of a resumed checkpoint that was saved before its validation.
        self._loaded_pending: Optional[Dict[str, Any]] = None
        # meta['dbbd_val_pending'] of the checkpoint being written
        self._writing_val_pending = False
        # Whether this hook took the work dir's run lock (run_lock).
        self._own_lock = False

    # ------------------------------------------------------------------
    # Resume: relative paths
    # ------------------------------------------------------------------

    def before_run(self, runner) -> None:
        """Resolve ``last_checkpoint`` against the work dir for auto-resume.

        mmengine's auto-resume (``resume=True`` without ``load_from``) opens
        whatever path ``last_checkpoint`` holds, relative to the process's
        current folder. ``Runner.train`` calls ``before_run`` before it
        loads, so handing the resolved path over as ``load_from`` makes it
        take its "resume from this checkpoint" branch instead.
        """
        # Private Runner attributes: 0.10.x has no public way to choose the
        # auto-resume file.
        if getattr(runner, '_resume', False) and getattr(
                runner, '_load_from', None) is None:
            # raises (one line) when last_checkpoint is empty, names an
            # address, a file outside the work dir or a missing file
            latest = find_latest_checkpoint(runner.work_dir)
            if latest is None:
                return
            runner.logger.info(f'Resuming from {latest} (last_checkpoint)')
            runner._load_from = latest

    def after_val_epoch(self, runner, metrics) -> None:
        """Track the best checkpoint, but only in a training run: a
        standalone ``runner.val()`` has no checkpoint folder set up and
        nothing to save."""
        if getattr(self, 'file_backend', None) is None:
            return
        super().after_val_epoch(runner, metrics)

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

        if self.save_best is not None:
            if len(self.key_indicators) == 1:
                self.best_ckpt_path = self._resolve_owned(
                    self.best_ckpt_path, runner)
            else:
                for key, path in list(self.best_ckpt_path_dict.items()):
                    self.best_ckpt_path_dict[key] = self._resolve_owned(
                        path, runner)

        if is_main_process() and osp.isdir(self.out_dir):
            for name in os.listdir(self.out_dir):
                if name.startswith('.') and name.endswith(TMP_SUFFIX):
                    os.remove(osp.join(self.out_dir, name))
                    runner.logger.warning(
                        f'Removed {name}, left by an interrupted checkpoint '
                        'write')
        self._remove_leftovers(runner)
        self._run_pending_validation(runner)

    def _remove_leftovers(self, runner) -> None:
        """Delete what a run killed between writing a checkpoint and
        deleting the ones it replaced left behind: regular checkpoints older
        than every one ``keep_ckpt_ids`` keeps, and best checkpoints of
        earlier steps the message hub no longer names. Rank 0; only names
        this hook writes; nothing newer than the resumed step."""
        if not is_main_process() or not osp.isdir(self.out_dir):
            return
        step = runner.epoch if self.by_epoch else runner.iter
        regular = _template_regex(self.filename_tmpl)
        if regular is None:
            return
        keep = (list(self.keep_ckpt_ids)
                if self.max_keep_ckpts > 0 else [])
        oldest_kept = min(keep) if keep else None
        bests = ({f'best_{k}_'.replace('/', '_') for k in self.key_indicators}
                 if self.save_best is not None else set())
        current = {osp.basename(p) for p in self._best_paths() if p}
        for name in sorted(os.listdir(self.out_dir)):
            stale = False
            match = regular.fullmatch(name)
            if match and self.filename_tmpl.format(int(match[1])) == name:
                n = int(match[1])
                stale = oldest_kept is not None and n < oldest_kept
            for prefix in bests:
                match = (regular.fullmatch(name[len(prefix):])
                         if name.startswith(prefix) else None)
                if match and int(match[1]) <= step and name not in current:
                    stale = True
            if stale:
                self._remove_owned(osp.join(self.out_dir, name), runner)

    def _best_paths(self) -> List[Optional[str]]:
        if self.save_best is None:
            return []
        if len(self.key_indicators) == 1:
            return [self.best_ckpt_path]
        return list(self.best_ckpt_path_dict.values())

    # ------------------------------------------------------------------
    # Checkpoints and the validation that follows them
    # ------------------------------------------------------------------

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

    def _save_checkpoint(self, runner) -> None:
        """Save this epoch's / iteration's regular checkpoint.

        When a validation follows, the file records
        ``meta['dbbd_val_pending'] = True`` and is written again, unmarked,
        once that validation and every hook acting on its result (best
        checkpoint, early stopping) are done (:meth:`after_val`). A run
        killed in between resumes from the marked file and runs the
        validation first (:meth:`_run_pending_validation`), so the
        validation is never lost.
        """
        if self.by_epoch:
            step = runner.epoch + 1
            meta = dict(epoch=step, iter=runner.iter)
        else:
            step = runner.iter + 1
            meta = dict(epoch=runner.epoch, iter=step)
        pending = self._validation_follows(runner, step)
        self._save_checkpoint_with_step(runner, step, meta,
                                        val_pending=pending)
        self._pending_val = (step, meta) if pending else None

    def after_val(self, runner) -> None:
        """Complete the checkpoint saved before this validation."""
        if getattr(self, 'file_backend', None) is None:
            return  # a standalone runner.val()
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
        (step, meta), self._pending_val = self._pending_val, None
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

    def after_train(self, runner) -> None:
        """Save the step where training stopped early (``save_last``: it is
        the last step), delete what the last checkpoints superseded, then
        mmengine's publishing."""
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
        elif self._pending_removals:
            for path in self._pending_removals:
                self._remove_owned(path, runner)
            self._pending_removals = []
        super().after_train(runner)
        if self._own_lock:
            release_work_dir_lock(runner.work_dir)
            self._own_lock = False

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

    # ------------------------------------------------------------------
    # Writing
    # ------------------------------------------------------------------

    def _write_checkpoint(self, runner, filename: str,
                          val_pending: bool = False, **save_kwargs) -> str:
        """``runner.save_checkpoint`` into a temporary file, then commit it
        as ``out_dir/filename``.

        ``Runner.save_checkpoint`` is ``master_only``: the temporary file
        exists, and is committed, on rank 0 only.

        Returns:
            str: the final path.
        """
        final = osp.join(self.out_dir, filename)
        self._check_finite(runner, filename)
        tmp = tmp_path_for(final)
        self._writing_val_pending = val_pending
        try:
            runner.save_checkpoint(
                osp.dirname(tmp), osp.basename(tmp), **save_kwargs)
            if is_main_process():
                self._check_complete(tmp, final)
                commit_file(tmp, final)
        except BaseException as e:
            if is_main_process() and osp.exists(tmp):
                os.remove(tmp)
            if is_disk_full(e):
                raise no_space_error(final, _state_bytes(runner)) from None
            raise
        finally:
            self._writing_val_pending = False
        return final

    def _check_finite(self, runner, filename: str) -> None:
        """Refuse to save weights holding NaN/Inf (a resume from them could
        only fail): :class:`NonFiniteWeightsError`, one line."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        state = model.state_dict()
        bad = non_finite_tensors(state)
        if not bad:
            return
        message = (
            f'the model weights hold NaN/Inf ({len(bad)} of {len(state)} '
            f'tensors, first: {bad[0]}; is the learning rate too large?); '
            f'{filename} was not saved; '
            f'{last_good_checkpoint(runner.work_dir)}')
        runner.logger.error(message)
        raise NonFiniteWeightsError(message)

    @staticmethod
    def _check_complete(tmp: str, final: str) -> None:
        """Refuse to commit a file that does not read back as a whole
        checkpoint (every record matching its CRC-32)."""
        try:
            check_archive(tmp, name=final)
        except CorruptCheckpointError as e:
            raise RuntimeError(
                f'the checkpoint written for {final} does not read back '
                f'({e}); it was not committed and the previous checkpoints '
                'are untouched') from None

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

    def _save_checkpoint_with_step(self, runner, step, meta,
                                   val_pending: bool = False) -> None:
        """Save ``filename_tmpl.format(step)``, then update
        ``last_checkpoint``, then delete what it supersedes."""
        hub = runner.message_hub
        to_remove: List[str] = []
        saved_info: Dict[str, Any] = {
            k: hub.runtime_info[k]
            for k in ('keep_ckpt_ids', 'last_ckpt') if k in hub.runtime_info
        }
        new_keep: Optional[deque] = None
        if self.max_keep_ckpts > 0:
            # A best-checkpoint update re-saves the step just saved; it is
            # already counted.
            if not (len(self.keep_ckpt_ids) > 0
                    and self.keep_ckpt_ids[-1] == step):
                ids = list(self.keep_ckpt_ids) + [step]
                while len(ids) > self.max_keep_ckpts:
                    to_remove.append(
                        osp.join(self.out_dir,
                                 self.filename_tmpl.format(ids.pop(0))))
                new_keep = deque(ids, self.max_keep_ckpts)
                # Before saving: the checkpoint records its own bookkeeping.
                hub.update_info('keep_ckpt_ids', ids)

        filename = self.filename_tmpl.format(step)
        hub.update_info('last_ckpt', filename)
        try:
            final = self._write_checkpoint(
                runner,
                filename,
                val_pending=val_pending,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                **self.args)
        except BaseException:
            # Keep the in-memory state matching what is on disk.
            for key in ('keep_ckpt_ids', 'last_ckpt'):
                if key in saved_info:
                    hub.update_info(key, saved_info[key])
                else:
                    hub.runtime_info.pop(key, None)
            raise
        if new_keep is not None:
            self.keep_ckpt_ids = new_keep
        self.last_ckpt = final

        if not is_main_process():
            self._pending_removals = []
            return
        # Only now that the checkpoint is complete may last_checkpoint name
        # it, and only once both are in place may older files go.
        save_file = osp.join(runner.work_dir, 'last_checkpoint')
        try:
            atomic_write_text(save_file, osp.relpath(final, runner.work_dir))
        except OSError as e:
            if is_disk_full(e):
                raise no_space_error(save_file, 4096) from None
            raise
        for path in to_remove + self._pending_removals:
            if osp.normpath(path) != osp.normpath(final):
                self._remove_owned(path, runner)
        self._pending_removals = []

    def _save_best_checkpoint(self, runner, metrics) -> None:
        """mmengine's best-checkpoint logic, reordered: write the new best,
        re-save the regular checkpoint that records it, then delete the old
        best."""
        if not self.save_best:
            return

        if self.by_epoch:
            ckpt_filename = self.filename_tmpl.format(runner.epoch)
            cur_type, cur_time = 'epoch', runner.epoch
        else:
            ckpt_filename = self.filename_tmpl.format(runner.iter)
            cur_type, cur_time = 'iter', runner.iter
        meta = dict(epoch=runner.epoch, iter=runner.iter)

        if 'auto' in self.key_indicators:
            self._init_rule(self.rules, [list(metrics.keys())[0]])

        hub = runner.message_hub
        stale: List[str] = []
        best_ckpt_updated = False
        for key_indicator, rule in zip(self.key_indicators, self.rules):
            key_score = metrics[key_indicator]
            single = len(self.key_indicators) == 1
            if single:
                best_score_key, best_ckpt_key = 'best_score', 'best_ckpt'
                previous = self.best_ckpt_path
            else:
                best_score_key = f'best_score_{key_indicator}'
                best_ckpt_key = f'best_ckpt_{key_indicator}'
                previous = self.best_ckpt_path_dict[key_indicator]

            if best_score_key in hub.runtime_info:
                best_score = hub.get_info(best_score_key)
            else:
                best_score = self.init_value_map[rule]
            if key_score is None or not self.is_better_than[key_indicator](
                    key_score, best_score):
                continue
            best_ckpt_updated = True

            best_ckpt_name = f'best_{key_indicator}_{ckpt_filename}'
            best_ckpt_name = best_ckpt_name.replace('/', '_')
            hub.update_info(best_score_key, key_score)
            hub.update_info(best_ckpt_key, best_ckpt_name)
            new_path = self._write_checkpoint(
                runner,
                best_ckpt_name,
                save_optimizer=False,
                save_param_scheduler=False,
                meta=dict(meta),
                by_epoch=False)
            if single:
                self.best_ckpt_path = new_path
            else:
                self.best_ckpt_path_dict[key_indicator] = new_path
            if previous and osp.normpath(previous) != osp.normpath(new_path):
                stale.append(previous)
            runner.logger.info(
                f'The best checkpoint with {key_score:0.4f} {key_indicator} '
                f'at {cur_time} {cur_type} is saved to {best_ckpt_name}.')

        # The old best goes once a regular checkpoint recording the new one
        # is on disk (this step's, completed after the validation, or the
        # next one), or when training ends: until then a resume knows it.
        self._pending_removals.extend(stale)

    # ------------------------------------------------------------------
    # Meta, loading, publishing
    # ------------------------------------------------------------------

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record the DBBD format version and the model config in
        ``meta``."""
        meta = checkpoint.setdefault('meta', {})
        meta['dbbd_format_version'] = CHECKPOINT_FORMAT_VERSION
        meta['dbbd_version'] = __version__
        cfg = getattr(runner, 'cfg', None)
        meta['model_cfg'] = to_plain(
            cfg.get('model') if cfg is not None else None)
        meta['dbbd_val_pending'] = bool(self._writing_val_pending)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Note a resumed checkpoint saved before its validation finished;
        warn when the checkpoint comes from a newer DBBD format."""
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        self._loaded_pending = None
        if (isinstance(meta, dict) and meta.get('dbbd_val_pending')
                and getattr(runner, '_resume', False)):
            self._loaded_pending = dict(epoch=meta.get('epoch'),
                                        iter=meta.get('iter'))
        version = meta.get('dbbd_format_version') if isinstance(
            meta, dict) else None
        if isinstance(version, int) and version > CHECKPOINT_FORMAT_VERSION:
            runner.logger.warning(
                f'The checkpoint has DBBD format version {version}, newer '
                f'than this code\'s {CHECKPOINT_FORMAT_VERSION}; it may not '
                'load correctly')

    @master_only
    def _publish_model(self, runner, ckpt_path: str) -> None:
        """mmengine's publishing (keep ``published_keys``, add the sha256
        prefix to the name) with the safe loader and an atomic write."""
        checkpoint = load_checkpoint_safe(ckpt_path)
        assert self.published_keys is not None
        removed_keys = [k for k in checkpoint if k not in self.published_keys]
        for key in removed_keys:
            checkpoint.pop(key)
        if removed_keys:
            print_log(
                f'Key {removed_keys} will be removed because they are not '
                'found in published_keys. If you want to keep them, '
                f'please set `{removed_keys}` in published_keys',
                logger='current')
        sha = hashlib.sha256(pickle.dumps(checkpoint)).hexdigest()
        final_path = osp.splitext(ckpt_path)[0] + f'-{sha[:8]}.pth'
        atomic_torch_save(checkpoint, final_path)
        print_log(
            f'The checkpoint ({ckpt_path}) is published to {final_path}.',
            logger='current')
