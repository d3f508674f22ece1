"""The exponential moving average of an EMA teacher (SelfDistill; DBBD
with ``ema_momentum``)."""
from typing import Iterable, Tuple

import torch
from torch import nn

__all__ = ['ema_update']


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
