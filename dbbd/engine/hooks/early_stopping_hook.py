"""``ResumableEarlyStoppingHook``: early stopping whose state survives a
resume."""
from math import isfinite
from typing import Any, Dict, Optional

from mmengine.hooks import EarlyStoppingHook

from dbbd.registry import HOOKS
from ..runner_access import resume_requested

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
    - leaves saving to ``SafeCheckpointHook``: a checkpoint saved before a
      validation is written again once the validation (and this hook's
      decision) is done, and the step where training stopped early is
      saved when ``save_last`` is set (it is the last step). A run killed
      before that resumes from the previous checkpoint and reaches the
      same decision again.

    Config (``configs/_base_/default_runtime.py``)::

        custom_hooks = [dict(type='ResumableEarlyStoppingHook',
                             monitor='loss', rule='less', min_delta=1e-3,
                             patience=5)]
    """

    # as mmengine's: decide after the checkpoint hook tracked the best
    priority = 'LOWEST'

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.stopped = False
        # 'patience', 'threshold' or 'non_finite': which condition stopped
        # training, so a resume can tell whether it still holds.
        self.stop_kind: Optional[str] = None
        self.stop_reason = ''
        self.stopped_at: Optional[Dict[str, int]] = None
        # Whether the resumed checkpoint records a stopped run.
        self._resumed_stopped = False
        # Validation also runs outside training (Runner.val); early stopping
        # must not decide there.
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
        """Restore the state of a resumed checkpoint (not of a
        ``load_from``: fine-tuning starts afresh).

        Restored here rather than in ``before_train`` because a checkpoint
        saved before its validation has that validation run first
        (``SafeCheckpointHook.before_train``), and it must count on the
        restored state.
        """
        self._resumed_stopped = False
        if not resume_requested(runner):
            return
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        state = meta.get(META_KEY) if isinstance(meta, dict) else None
        if not isinstance(state, dict):
            return
        if (state.get('monitor'), state.get('rule')) != (self.monitor,
                                                          self.rule):
            runner.logger.warning(
                'Early stopping: the checkpoint monitored '
                f"{state.get('monitor')!r} ({state.get('rule')}), this "
                f'config monitors {self.monitor!r} ({self.rule}); starting '
                'early stopping afresh')
            return
        self.load_state_dict(state)
        self._training = True
        self._resumed_stopped = self.stopped

    def before_train(self, runner) -> None:
        """Keep a stopped run stopped."""
        self._training = True
        resumed_stopped, self._resumed_stopped = self._resumed_stopped, False
        if not resumed_stopped:
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
        """mmengine's decision, plus which condition fired and where."""
        if not self._training:
            return
        super().after_val_epoch(runner, metrics)
        # stop_kind is set only by this hook's own decision (another hook
        # may set stop_training for reasons of its own).
        if self.stop_kind is not None and not self.stopped:
            self.stopped = True
            self.stopped_at = dict(epoch=runner.epoch, iter=runner.iter)

    def after_train(self, runner) -> None:
        self._training = False
