"""``ResumableEarlyStoppingHook``: early stopping whose state survives a
resume."""
import os.path as osp
from math import isfinite
from typing import Any, Dict, Optional

from mmengine.hooks import CheckpointHook, EarlyStoppingHook

from dbbd.registry import HOOKS

__all__ = ['ResumableEarlyStoppingHook']

#: Key under ``checkpoint['meta']``.
META_KEY = 'early_stopping'


@HOOKS.register_module()
class ResumableEarlyStoppingHook(EarlyStoppingHook):
    """mmengine's ``EarlyStoppingHook`` (same arguments) that keeps its
    state in checkpoints.

    mmengine's hook keeps the best score and the count of validations
    without improvement in memory only: a resumed run starts counting from
    zero, and a run that had stopped early trains on. This hook

    - writes ``meta['early_stopping']`` into every checkpoint (best score,
      wait count, whether and why it stopped, at which epoch/iteration;
      plain Python values, so ``weights_only=True`` loading reads them);
    - restores that state when a run is resumed (not on a plain
      ``load_from``: fine-tuning from a checkpoint starts afresh);
    - keeps a stopped run stopped: ``before_train`` sets the loop's
      ``stop_training``, which ``EpochBasedTrainLoop`` /
      ``IterBasedTrainLoop`` check before each epoch / iteration, so no
      further epoch runs, and logs one line saying so. When the config was
      changed so that the stop condition no longer holds (a larger
      ``patience``, no ``stopping_threshold``), training continues and the
      log says that instead;
    - saves a checkpoint when it stops training. mmengine's ``save_last``
      only fires at ``max_epochs``, and the regular checkpoint of the
      current epoch was written *before* validation, so without this save
      the stop would never reach disk;
    - re-writes the regular checkpoint of the current epoch/iteration after
      a validation that changed its state, when that checkpoint exists
      (epochs that both save and validate). A resumed run continues after
      that validation without repeating it, so the checkpoint must hold the
      state after it; otherwise patience would be off by one validation.
      This costs one extra checkpoint write on such epochs.

    Saves go through the runner's checkpoint hook
    (``SafeCheckpointHook``: atomic, honouring ``max_keep_ckpts`` and
    ``last_checkpoint``). The priority stays ``LOWEST``, as in mmengine, so
    the checkpoint hook's best-checkpoint logic has run when the state is
    saved.

    Config (``configs/_base_/default_runtime.py``)::

        custom_hooks = [dict(type='ResumableEarlyStoppingHook',
                             monitor='loss', rule='less', min_delta=1e-3,
                             patience=5)]
    """

    priority = 'LOWEST'

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stopped = False
        # 'patience', 'threshold' or 'non_finite': which condition stopped
        # training, so a resume can tell whether it still holds.
        self.stop_kind: Optional[str] = None
        self.stop_reason = ''
        self.stopped_at: Optional[Dict[str, int]] = None
        # State read from a checkpoint; applied in before_train once it is
        # known that the checkpoint was resumed rather than load_from'd.
        self._loaded: Optional[Dict[str, Any]] = None
        self._warned_no_ckpt_hook = False
        # Validation also runs outside training (Runner.val); early stopping
        # must neither decide nor save a checkpoint there.
        self._training = False

    # ------------------------------------------------------------------
    # State
    # ------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """The state, as plain Python values (``float('inf')`` included,
        which pickles as a float)."""
        return dict(
            monitor=self.monitor,
            rule=self.rule,
            best_score=float(self.best_score),
            wait_count=int(self.wait_count),
            stopped=bool(self.stopped),
            stop_kind=self.stop_kind,
            stop_reason=str(self.stop_reason),
            stopped_at=dict(self.stopped_at) if self.stopped_at else None)

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output."""
        self.best_score = float(state['best_score'])
        self.wait_count = int(state['wait_count'])
        self.stopped = bool(state.get('stopped', False))
        self.stop_kind = state.get('stop_kind')
        self.stop_reason = state.get('stop_reason') or ''
        self.stopped_at = state.get('stopped_at')

    def _still_stopped(self) -> bool:
        """Whether the condition that stopped training holds under the
        current arguments."""
        if self.stop_kind == 'patience':
            return self.wait_count >= self.patience
        if self.stop_kind == 'threshold':
            return self.stopping_threshold is not None and self.rule_map[
                self.rule](self.best_score, self.stopping_threshold)
        if self.stop_kind == 'non_finite':
            return bool(self.check_finite)
        return True

    # ------------------------------------------------------------------
    # Checkpoint round trip
    # ------------------------------------------------------------------

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record the state in ``meta['early_stopping']``."""
        checkpoint.setdefault('meta', {})[META_KEY] = self.state_dict()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved state for :meth:`before_train`."""
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        state = meta.get(META_KEY) if isinstance(meta, dict) else None
        self._loaded = None
        if not isinstance(state, dict):
            return
        self._loaded = dict(
            state=state, epoch=meta.get('epoch'), iter=meta.get('iter'))

    def before_train(self, runner) -> None:
        """Restore the state of a resumed checkpoint; keep a stopped run
        stopped."""
        self._training = True
        loaded, self._loaded = self._loaded, None
        if loaded is None or not self._was_resumed(runner, loaded):
            return
        state = loaded['state']
        if (state.get('monitor'), state.get('rule')) != (self.monitor,
                                                          self.rule):
            runner.logger.warning(
                'Early stopping: the checkpoint monitored '
                f"{state.get('monitor')!r} ({state.get('rule')}), this "
                f'config monitors {self.monitor!r} ({self.rule}); starting '
                'early stopping afresh')
            return
        self.load_state_dict(state)
        if not self.stopped:
            return
        at = self._describe_step(self.stopped_at)
        if self._still_stopped():
            runner.train_loop.stop_training = True
            how = {
                'patience': f'raise patience above {self.wait_count}',
                'threshold': 'change or remove stopping_threshold',
                'non_finite': 'set check_finite=False',
            }.get(self.stop_kind, 'change the early-stopping settings')
            runner.logger.info(
                f'Early stopping had stopped this run{at} '
                f'({self.stop_reason.strip()}); it stays stopped, no further '
                f'epochs are trained ({how} to train on)')
        else:
            self.stopped = False
            self.stop_kind, self.stop_reason, self.stopped_at = None, '', None
            runner.logger.info(
                f'Early stopping had stopped this run{at}, but the current '
                'early-stopping settings let it continue; training resumes')

    @staticmethod
    def _was_resumed(runner, loaded: Dict[str, Any]) -> bool:
        """Whether the loaded checkpoint was resumed: ``Runner.resume`` sets
        the loop's epoch and iteration from ``meta``, ``load_from`` leaves
        them at 0."""
        return (runner.iter == loaded.get('iter')
                and runner.epoch == loaded.get('epoch') and runner.iter > 0)

    @staticmethod
    def _describe_step(at: Optional[Dict[str, int]]) -> str:
        if not at:
            return ''
        return f" after epoch {at.get('epoch')} (iteration {at.get('iter')})"

    # ------------------------------------------------------------------
    # Deciding and saving
    # ------------------------------------------------------------------

    def _check_stop_condition(self, current_score: float):
        """mmengine's decision, plus which condition fired (tested in the
        same order as mmengine does)."""
        stop, message = super()._check_stop_condition(current_score)
        if stop:
            if self.check_finite and not isfinite(current_score):
                self.stop_kind = 'non_finite'
            elif self.stopping_threshold is not None and self.rule_map[
                    self.rule](current_score, self.stopping_threshold):
                self.stop_kind = 'threshold'
            else:
                self.stop_kind = 'patience'
            self.stop_reason = message
        return stop, message

    def after_val_epoch(self, runner, metrics) -> None:
        """mmengine's decision, then put the new state on disk (see the
        class docstring)."""
        if not self._training:
            return
        before = self.state_dict()
        super().after_val_epoch(runner, metrics)
        # stop_kind is set only by this hook's own decision (another hook
        # may set stop_training for reasons of its own).
        if self.stop_kind is not None and not self.stopped:
            self.stopped = True
            self.stopped_at = dict(epoch=runner.epoch, iter=runner.iter)
        if self.state_dict() == before:
            return
        self._save_state(runner)

    def after_train(self, runner) -> None:
        self._training = False

    def _checkpoint_hook(self, runner) -> Optional[CheckpointHook]:
        for hook in runner.hooks:
            if isinstance(hook, CheckpointHook):
                return hook
        return None

    def _save_state(self, runner) -> None:
        """Re-write this step's regular checkpoint, or write one when
        training just stopped and there is none."""
        hook = self._checkpoint_hook(runner)
        if hook is None:
            if self.stopped and not self._warned_no_ckpt_hook:
                self._warned_no_ckpt_hook = True
                runner.logger.warning(
                    'Early stopping stopped training but there is no '
                    'checkpoint hook to save that; a resume would train on')
            return
        # Val runs after the loop advanced: runner.epoch / runner.iter is
        # the step the checkpoint hook used for this epoch's / iteration's
        # file (it saves with epoch + 1 / iter + 1 before the increment).
        step = runner.epoch if hook.by_epoch else runner.iter
        name = hook.filename_tmpl.format(step)
        have_regular = (hook.last_ckpt is not None
                        and osp.basename(str(hook.last_ckpt)) == name)
        if not have_regular and not self.stopped:
            # A resume starts from an earlier checkpoint and repeats this
            # validation, so that checkpoint's state is the right one.
            return
        if not have_regular:
            runner.logger.info(
                f'Saving checkpoint {name}: early stopping ended training '
                'here and a resume has to know that')
        hook._save_checkpoint_with_step(
            runner, step, dict(epoch=runner.epoch, iter=runner.iter))
