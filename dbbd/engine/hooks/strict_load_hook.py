"""``StrictLoadHook``: refuse checkpoints that do not fit the model."""
from typing import Sequence

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from dbbd.registry import HOOKS
from ..checkpoint import find_latest_checkpoint
from ..runner_access import checkpoint_to_load, resume_requested
from ..state_check import check_checkpoint

__all__ = ['StrictLoadHook']


def checkpoint_source(runner) -> str:
    """Best available name of the checkpoint the runner is loading.

    ``after_load_checkpoint`` receives the checkpoint but not its path; the
    runner's ``load_from`` (which ``SafeCheckpointHook`` fills in for
    auto-resume) or the work dir's latest checkpoint is the file
    ``load_or_resume`` opens.
    """
    path = checkpoint_to_load(runner)
    if path is None and resume_requested(runner):
        path = find_latest_checkpoint(runner.work_dir, strict=False)
    return str(path) if path else 'the checkpoint'


@HOOKS.register_module()
class StrictLoadHook(Hook):
    """Fail, listing every mismatch, instead of loading weights partly.

    mmengine loads ``load_from`` and resumed checkpoints with
    ``strict=False``: missing keys, unexpected keys and shape mismatches are
    logged as warnings and training continues from a partly initialised
    model. With this hook the load stops with
    :class:`~dbbd.engine.state_check.CheckpointMismatchError` (one-line
    summary, then one line per mismatch, plus the model-config keys that
    differ from the checkpoint's ``meta['model_cfg']``), and a checkpoint
    of a newer DBBD format stops with
    :class:`~dbbd.engine.state_check.CheckpointVersionError`.

    ``Runner.load_checkpoint`` calls ``after_load_checkpoint`` after reading
    the file and before copying anything into the model, so a refused
    checkpoint leaves the model as it was. The priority is ``VERY_HIGH`` so
    the check runs before other hooks act on the checkpoint (restoring
    early-stopping state, for instance).

    Args:
        allow_missing (Sequence[str]): regular expressions of model keys
            that may be absent from the checkpoint, for a deliberate partial
            load (a new head on a pre-trained encoder, say). Default: none.
        allow_unexpected (Sequence[str]): regular expressions of checkpoint
            keys the model may lack. Default: none.

    Config::

        custom_hooks = [dict(type='StrictLoadHook')]
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 allow_missing: Sequence[str] = (),
                 allow_unexpected: Sequence[str] = ()) -> None:
        for name, value in (('allow_missing', allow_missing),
                            ('allow_unexpected', allow_unexpected)):
            if isinstance(value, str) or not all(
                    isinstance(p, str) for p in value):
                raise TypeError(f'StrictLoadHook: {name} must be a list of '
                                f'regular expressions, got {value!r}')
        self.allow_missing = tuple(allow_missing)
        self.allow_unexpected = tuple(allow_unexpected)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Raise unless ``checkpoint`` fits ``runner.model`` exactly."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        cfg = getattr(runner, 'cfg', None)
        check_checkpoint(
            model,
            checkpoint,
            checkpoint_source(runner),
            model_cfg=cfg.get('model') if cfg is not None else None,
            allow_missing=self.allow_missing,
            allow_unexpected=self.allow_unexpected)
