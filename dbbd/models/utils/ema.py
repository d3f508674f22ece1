"""The exponential moving average of an EMA teacher (SelfDistill; DBBD
with ``ema_momentum``)."""
from typing import Iterable, Tuple

import torch
from torch import nn

__all__ = ['ema_update', 'EMATeacherMixin']


@torch.no_grad()
def ema_update(pairs: Iterable[Tuple[nn.Module, nn.Module]],
               momentum: float, copy: bool = False) -> None:
    """One update of each ``(teacher, student)`` module pair:
    ``teacher = momentum * teacher + (1 - momentum) * student`` for every
    parameter (the teacher's buffers, e.g. BatchNorm statistics, stay its
    own); ``copy=True``: the teacher takes the student's parameters and
    buffers entirely (the first update, whatever initialisation or
    ``load_from`` came before)."""
    for teacher, student in pairs:
        if copy:
            teacher.load_state_dict(student.state_dict())
            continue
        for t, s in zip(teacher.parameters(), student.parameters()):
            t.lerp_(s.detach(), 1.0 - momentum)


class EMATeacherMixin:
    """The update count of an EMA teacher, for a model (an ``nn.Module``)
    that has one: the ``teacher_step`` buffer (saved with the checkpoint,
    so a resumed run goes on from the same teacher), mirrored on the host
    as ``_step`` (no device read per step) and set again whenever a state
    dict is loaded.

    The model calls :meth:`_init_teacher_step` once its teacher exists and
    defines ``_teacher_pairs()`` (the ``(teacher, student)`` module pairs)
    and ``_teacher_momentum(step)`` (the momentum of update ``step``,
    1-based).
    """

    def _init_teacher_step(self) -> None:
        self.register_buffer('teacher_step',
                             torch.zeros((), dtype=torch.long))
        self._step = 0

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if 'teacher_step' in self._buffers:
            self._step = int(self.teacher_step)

    def update_teacher(self) -> float:
        """One EMA update of the teacher (:func:`ema_update`): the first
        (``teacher_step == 0``) copies the student's parameters and
        buffers, every later one averages the parameters with momentum
        ``_teacher_momentum(step)``. Returns the momentum used (0 for the
        copy: the teacher took the student's weights entirely)."""
        step = self._step
        m = self._teacher_momentum(step) if step else 0.0
        ema_update(self._teacher_pairs(), m, copy=step == 0)
        self.teacher_step.add_(1)
        self._step = step + 1
        return m
