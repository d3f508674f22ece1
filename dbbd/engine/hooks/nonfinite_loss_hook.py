"""``NonFiniteLossHook``: stop at the first NaN/Inf loss or gradient, before
it reaches the weights or a checkpoint."""
import math
from typing import Any, Dict, List, Optional, Tuple

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict
from mmengine.runner import EpochBasedTrainLoop

from dbbd.registry import HOOKS
from ..checkpoint import (CheckpointLoadError, find_latest_checkpoint,
                          load_checkpoint_safe)

__all__ = [
    'NonFiniteLossError', 'NonFiniteWeightsError', 'NonFiniteLossHook',
    'non_finite_tensors', 'non_finite_optimizer_state', 'checkpoint_problem',
    'last_good_checkpoint'
]


class NonFiniteLossError(FloatingPointError):
    """Training met a NaN/Inf loss or gradient. The message is one line: the
    epoch, the iteration, the scene ids of the batch, the bad values and the
    last good checkpoint."""


class NonFiniteWeightsError(NonFiniteLossError):
    """The model's weights, or the optimizer's state (Adam's moments, say),
    are NaN/Inf where a checkpoint was due; the checkpoint is not written.
    One line."""


def non_finite_tensors(state: Dict[str, Any]) -> List[str]:
    """Names of the floating-point tensors of ``state`` holding a NaN or an
    Inf (one device synchronisation when all are finite)."""
    items = [(k, v) for k, v in state.items()
             if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not items:
        return []
    try:
        flags = torch.stack([torch.isfinite(v).all() for _, v in items])
        if bool(flags.all()):
            return []
    except RuntimeError:  # tensors on several devices: check one by one
        pass
    return [k for k, v in items if not bool(torch.isfinite(v).all())]


def _leaves(obj: Any, prefix: str):
    """(dotted name, value) of the tensors and floats below ``obj``."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, f'{prefix}.{k}' if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _leaves(v, f'{prefix}.{i}' if prefix else str(i))
    elif isinstance(obj, (torch.Tensor, float)):
        yield prefix, obj


def non_finite_optimizer_state(state: Any) -> List[str]:
    """Names (``state.3.exp_avg_sq``, ``param_groups.0.lr``) of the
    floating-point tensors and numbers of an optimizer's ``state_dict``
    (or of several, nested, as ``OptimWrapperDict`` saves them) that hold
    a NaN or an Inf."""
    tensors, bad = {}, []
    for name, value in _leaves(state, ''):
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                tensors[name] = value
        elif not math.isfinite(value):
            bad.append(name)
    return bad + non_finite_tensors(tensors)


def checkpoint_problem(ckpt: Any, with_optimizer: bool = True
                       ) -> Optional[Tuple[str, str]]:
    """None, or what is non-finite in a loaded checkpoint: ``('weights',
    first name)`` or ``('optimizer state', first name)``."""
    if not isinstance(ckpt, dict):
        return None
    state = ckpt.get('state_dict', ckpt)
    bad = non_finite_tensors(state if isinstance(state, dict) else {})
    if bad:
        return 'weights', bad[0]
    if with_optimizer and ckpt.get('optimizer') is not None:
        bad = non_finite_optimizer_state(ckpt['optimizer'])
        if bad:
            return 'optimizer state', bad[0]
    return None


def last_good_checkpoint(work_dir: str) -> str:
    """'last good checkpoint: PATH' for the work dir's latest checkpoint
    when its weights are finite; otherwise a phrase saying there is none
    (read from disk: only called when training has already failed)."""
    latest = find_latest_checkpoint(work_dir, strict=False)
    if latest is None:
        return 'no checkpoint had been saved yet'
    try:
        ckpt = load_checkpoint_safe(latest)
    except (CheckpointLoadError, OSError) as e:
        return (f'the latest checkpoint {latest} cannot be loaded '
                f'({" ".join(str(e).split())})')
    problem = checkpoint_problem(ckpt)
    if problem:
        return (f'the latest checkpoint {latest} has non-finite '
                f'{problem[0]} too (first: {problem[1]}), so no good '
                'checkpoint is known')
    return f'last good checkpoint: {latest}'


def _scene_ids(data_batch: Any) -> List[str]:
    """Scene ids of a DBBD batch (``data_samples``: dicts with
    ``scene_id``); data elements with a ``scene_id`` field or metainfo key
    work too."""
    samples = data_batch.get('data_samples') if isinstance(
        data_batch, dict) else None
    ids = []
    for sample in samples or []:
        sid = None
        if isinstance(sample, dict):
            sid = sample.get('scene_id')
        elif hasattr(sample, 'scene_id'):
            sid = sample.scene_id
        elif isinstance(getattr(sample, 'metainfo', None), dict):
            sid = sample.metainfo.get('scene_id')
        if sid is not None:
            # the message must stay on one line
            ids.append(' '.join(str(sid).split()))
    return ids


def _loss_values(losses: Any) -> Dict[str, Any]:
    """The entries of a loss dict that count towards the loss (mmengine's
    ``parse_losses`` sums the keys containing ``'loss'``), as tensors or
    numbers; lists of tensors are summed as ``parse_losses`` does."""
    out: Dict[str, Any] = {}
    if not isinstance(losses, dict):
        return out
    for key, value in losses.items():
        if 'loss' not in str(key):
            continue
        if isinstance(value, (list, tuple)):
            tensors = [v for v in value if isinstance(v, torch.Tensor)]
            if tensors:
                out[key] = sum(t.detach().float().mean() for t in tensors)
        elif isinstance(value, torch.Tensor):
            out[key] = value.detach().float().mean()
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out[key] = float(value)
    return out


_GRAD_NORM = '__grad_norm__'


def _to_host(values: Dict[str, Any], extra: list) -> Dict[str, float]:
    """{key: float} of ``values`` (tensors or numbers) and, under
    ``_GRAD_NORM``, of ``extra[0]``: one host synchronisation for all."""
    keys = list(values)
    tensors = [values[k] for k in keys] + extra
    if not tensors:
        return {}
    device = next((t.device for t in tensors if isinstance(t, torch.Tensor)),
                  torch.device('cpu'))
    stacked = torch.stack([
        t.detach().float().mean().to(device) if isinstance(t, torch.Tensor)
        else torch.tensor(float(t), device=device) for t in tensors
    ]).tolist()
    out = dict(zip(keys, stacked))
    if extra:
        out[_GRAD_NORM] = stacked[-1]
    return out


def _total_norm(grads: List[torch.Tensor]) -> torch.Tensor:
    """2-norm of all gradients together: finite exactly when every entry is
    (barring overflow of gradients near 1e19, which would wreck the weights
    anyway). One reduction instead of a check per tensor."""
    get_total_norm = getattr(torch.nn.utils, 'get_total_norm', None)
    if get_total_norm is not None:  # torch >= 2.6: grouped foreach kernels
        return get_total_norm(grads, error_if_nonfinite=False)
    device = grads[0].device
    return torch.stack(
        [g.detach().norm().to(device) for g in grads]).norm()


@HOOKS.register_module()
class NonFiniteLossHook(Hook):
    """Stop training with :class:`NonFiniteLossError` at the first NaN/Inf
    loss or gradient.

    The point is that nothing already saved is lost and nothing corrupted
    is saved, at the cost of one host synchronisation per step:

    1. **Loss and gradients, before the optimizer step.** An optimizer
       step pre-hook reads the step's logged values (the model's
       ``step_log_vars``, see :class:`dbbd.models.base.DBBDBaseModel`; for
       other models the loss entries a forward hook kept) and the total
       gradient norm back from the device in ONE transfer, and raises if an
       entry counted as loss (key contains ``'loss'``) or the gradient norm
       is NaN/Inf; the weights are unchanged. The host values replace the
       tensors in the dict ``train_step`` returns, so the logger reads them
       without synchronising again. This works whatever optimizer wrapper
       the config uses (plain, AMP, gradient accumulation): ``--amp``
       replaces the wrapper type, not the optimizer. Under AMP the loss
       scaler skips steps with non-finite gradients by itself (the
       optimizer's ``step`` is not called), so dynamic loss scaling keeps
       working.
    2. **Outputs, after the iteration.** When no optimizer step ran (or the
       model's ``train_step`` does not go through ``forward``),
       ``after_train_iter`` checks the logged losses, in one transfer too.

    The error propagates out of ``Runner.train``, so no later hook of that
    iteration or epoch runs: the checkpoint hook (priority ``VERY_LOW``;
    this hook is ``ABOVE_NORMAL``) writes nothing, and every checkpoint on
    disk predates the bad batch. The message (one line) names the epoch and
    iteration (1-based, as in the log), the scene ids of the batch (on
    which rank, when distributed), the bad values and the last checkpoint,
    and is also written to the log. ``tools/train.py`` catches
    :class:`NonFiniteLossError` and prints it. Distributed, the logged
    losses are averaged over ranks before the check, so every rank stops.

    Args:
        check_grads (bool): also check gradients before each optimizer step
            (one reduction over the gradients, read back in the same
            transfer as the losses). Defaults to True.
        max_scene_ids (int): scene ids listed in the message before it says
            "and N more". Defaults to 16.

    Config::

        custom_hooks = [dict(type='NonFiniteLossHook')]
    """

    # Before EMAHook (NORMAL), the logger (BELOW_NORMAL), the scheduler
    # (LOW) and the checkpoint hook (VERY_LOW) in after_train_iter.
    priority = 'ABOVE_NORMAL'

    def __init__(self, check_grads: bool = True,
                 max_scene_ids: int = 16) -> None:
        self.check_grads = bool(check_grads)
        self.max_scene_ids = int(max_scene_ids)
        self._handles: list = []
        self._runner = None
        self._model = None
        self._batch: Optional[Dict[str, Any]] = None
        self._param_names: Dict[int, str] = {}

    # ------------------------------------------------------------------
    # Installing the torch hooks
    # ------------------------------------------------------------------

    def before_train(self, runner) -> None:
        """Attach the forward hook and the optimizer step pre-hooks (after
        resume: ``Runner.resume`` may have rebuilt the optimizer)."""
        self._remove_handles()
        self._runner = runner
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self._model = model
        self._handles.append(
            model.register_forward_hook(self._check_forward,
                                        with_kwargs=True))
        for optimizer in self._optimizers(runner.optim_wrapper):
            self._handles.append(
                optimizer.register_step_pre_hook(self._check_grads))
        # Parameter names for the message, looked up only on failure.
        self._param_names = {
            id(p): n
            for n, p in model.named_parameters()
        }

    def after_train(self, runner) -> None:
        self._remove_handles()
        self._batch = None

    def _remove_handles(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    @staticmethod
    def _optimizers(optim_wrapper) -> List[torch.optim.Optimizer]:
        if isinstance(optim_wrapper, OptimWrapperDict):
            return [w.optimizer for w in optim_wrapper.optim_wrappers.values()]
        optimizer = getattr(optim_wrapper, 'optimizer', None)
        return [optimizer] if optimizer is not None else []

    # ------------------------------------------------------------------
    # The checks
    # ------------------------------------------------------------------

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch: Any = None) -> None:
        # What the torch hooks need to name the batch if they fire; None
        # outside training iterations (validation also calls forward).
        self._batch = dict(batch_idx=batch_idx, data_batch=data_batch)

    def batch_scene_ids(self) -> Optional[List[str]]:
        """The scene ids of the training batch being run (for messages of
        errors raised inside the step); None outside a training
        iteration or when the batch names none."""
        batch = self._batch or {}
        ids = _scene_ids(batch.get('data_batch'))
        return ids or None

    def _check_forward(self, module, args, kwargs, output) -> None:
        """Forward hook: keep the loss of a training forward pass for the
        check before the optimizer step (reading it back now would cost a
        host synchronisation of its own)."""
        if self._batch is None or kwargs.get('mode') != 'loss':
            return
        self._batch['losses'] = output

    def _step_values(self) -> Tuple[Dict[str, Any], Optional[dict]]:
        """The step's values to check: the model's ``step_log_vars`` (which
        are then written back as host values) or, for other models, the
        loss entries the forward hook kept."""
        log_vars = getattr(self._model, 'step_log_vars', None)
        if isinstance(log_vars, dict) and log_vars:
            return dict(log_vars), log_vars
        return _loss_values((self._batch or {}).get('losses')), None

    def _check_grads(self, optimizer, args, kwargs) -> None:
        """Optimizer step pre-hook: the step's loss and every gradient are
        finite. One host transfer for the losses, the logged values and the
        gradient norm together."""
        if self._batch is None:
            return
        values, log_vars = self._step_values()
        grads = [
            p.grad for group in optimizer.param_groups
            for p in group['params'] if p.grad is not None
        ] if self.check_grads else []
        extra = [_total_norm(grads)] if grads else []
        host = _to_host(values, extra)
        if log_vars is not None:
            self._model.step_log_vars = None
            # the dict train_step returns: the logger reads floats from it
            for key in log_vars:
                log_vars[key] = host[key]
            self._batch['host'] = True
        bad = {k: v for k, v in host.items()
               if 'loss' in str(k) and not math.isfinite(v)}
        if bad:
            self._fail_current(
                'non-finite loss',
                ', '.join(f'{k}={v}' for k, v in bad.items()),
                'stopped before the optimizer step, the weights are '
                'unchanged')
        if not grads or math.isfinite(host[_GRAD_NORM]):
            return
        names = [
            self._param_names.get(id(p), '?')
            for group in optimizer.param_groups for p in group['params']
            if p.grad is not None and not bool(torch.isfinite(p.grad).all())
        ]
        detail = (f'{len(names)} of {len(grads)} gradients non-finite, '
                  f'first: {names[0]}' if names else
                  'the gradient norm overflows')
        self._fail_current('non-finite gradient', detail,
                           'stopped before the optimizer step, the weights '
                           'are unchanged')

    def after_train_iter(self,
                         runner,
                         batch_idx: int,
                         data_batch: Any = None,
                         outputs: Optional[dict] = None) -> None:
        """The logged losses, when the check before the optimizer step did
        not see them (no step this iteration, a model whose ``train_step``
        bypasses ``forward``); read back in one transfer."""
        batch, self._batch = self._batch or {}, None
        if batch.get('host') or not isinstance(outputs, dict):
            return
        values = _loss_values(outputs)
        host = _to_host(values, [])
        bad = {k: v for k, v in host.items() if not math.isfinite(v)}
        if bad:
            self._fail(
                runner, batch_idx, data_batch, 'non-finite loss',
                ', '.join(f'{k}={v}' for k, v in bad.items()),
                'stopped after the iteration, before anything was saved')

    # ------------------------------------------------------------------
    # The error
    # ------------------------------------------------------------------

    def _where(self, runner, batch_idx: int) -> str:
        """'epoch 2, iteration 14 (batch 4/10)' in the log's 1-based
        numbering."""
        it = runner.iter + 1
        if not isinstance(runner.train_loop, EpochBasedTrainLoop):
            return f'iteration {it}'
        try:
            total = f'/{len(runner.train_dataloader)}'
        except TypeError:  # an iterable dataset has no length
            total = ''
        return (f'epoch {runner.epoch + 1}, iteration {it} '
                f'(batch {batch_idx + 1}{total} of the epoch)')

    def _scenes(self, data_batch: Any) -> str:
        ids = _scene_ids(data_batch)
        rank = (f' on rank {get_rank()}' if get_world_size() > 1 else '')
        if not ids:
            return f'batch scene ids unknown{rank}'
        shown = ', '.join(ids[:self.max_scene_ids])
        more = (f' and {len(ids) - self.max_scene_ids} more'
                if len(ids) > self.max_scene_ids else '')
        return f'scenes{rank}: {shown}{more}'

    def _fail_current(self, what: str, detail: str,
                      consequence: str) -> None:
        """:meth:`_fail` for the batch of the running iteration (the torch
        hooks do not receive it)."""
        batch, self._batch = self._batch or {}, None
        self._fail(self._runner, batch.get('batch_idx', 0),
                   batch.get('data_batch'), what, detail, consequence)

    def _fail(self, runner, batch_idx: int, data_batch: Any, what: str,
              detail: str, consequence: str) -> None:
        """Log and raise the one-line :class:`NonFiniteLossError`."""
        last = last_good_checkpoint(runner.work_dir)
        message = (f'{what} at {self._where(runner, batch_idx)}, '
                   f'{self._scenes(data_batch)} ({detail}); {consequence}; '
                   f'{last}')
        runner.logger.error(message)
        raise NonFiniteLossError(message)
