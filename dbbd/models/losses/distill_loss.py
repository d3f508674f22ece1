"""Self-distillation loss: the teacher's prototype scores, centred by
Sinkhorn-Knopp, are the targets of the student's."""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from dbbd.registry import MODELS
from dbbd.utils.config_check import check_int, check_number

__all__ = ['sinkhorn_knopp', 'PrototypeDistillLoss']


def _all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum over ranks when training is distributed (in place), else ``t``.
    """
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized() and \
            dist.get_world_size() > 1:
        dist.all_reduce(t)
    return t


@torch.no_grad()
def sinkhorn_knopp(scores: torch.Tensor, weight: Optional[torch.Tensor] = None,
                   temperature: float = 1.0,
                   num_iters: int = 3) -> torch.Tensor:
    """Balanced soft assignment of samples to prototypes (SwAV; DINOv2's and
    Sonata's centring of the teacher): the softmax of ``scores /
    temperature``, rescaled so that every prototype receives the same
    share of the samples.

    ``Q = exp(scores / temperature) * weight`` (shifted by the maximum for
    stability), normalised to total mass 1; then ``num_iters`` times:
    every prototype's column is scaled to mass ``1 / K``, then every
    sample's row to ``w_i / sum(w)``. The rows are returned times
    ``sum(w)``: each counted sample's assignment sums to 1, a sample of
    weight 0 gets zeros and changes nothing else. Under distributed
    training the column and total masses are summed over ranks, so the
    balance is over the global batch.

    Args:
        scores (..., N, K): prototype scores; leading dims are independent
            groups (one per pair of views).
        weight (..., N): which samples count (0 or 1; None: all).
        temperature: the teacher's temperature.
        num_iters: alternating normalisations (3 in SwAV and DINOv2).

    Returns:
        (..., N, K) float32 assignments (no gradient).
    """
    scores = scores.float() / temperature
    if weight is None:
        weight = scores.new_ones(scores.shape[:-1])
    weight = weight.to(scores.dtype)
    num_protos = scores.shape[-1]
    # one shift per group: the normalisations remove any constant factor
    shift = _max_over(scores)
    q = torch.exp(scores - shift) * weight.unsqueeze(-1)
    total_weight = _all_reduce_sum(weight.sum(-1, keepdim=True))
    q = q / _all_reduce_sum(q.sum((-2, -1), keepdim=True)).clamp_min(1e-30)
    for _ in range(num_iters):
        cols = _all_reduce_sum(q.sum(-2, keepdim=True))
        q = q / (cols * num_protos).clamp_min(1e-30)
        rows = q.sum(-1, keepdim=True)
        q = q / (rows * total_weight.unsqueeze(-1)).clamp_min(1e-30)
        q = q * weight.unsqueeze(-1)
    return q * total_weight.unsqueeze(-1)


def _max_over(scores):
    """The largest score of each group, ``(..., 1, 1)`` (a scalar per group
    changes nothing after normalising, and keeps ``exp`` finite)."""
    flat = scores.flatten(-2)
    return flat.max(-1).values[..., None, None]


@MODELS.register_module()
class PrototypeDistillLoss(nn.Module):
    """Cross-entropy of the student's prototype distribution against the
    teacher's centred one, on matched points.

    ``targets`` (:meth:`targets`): :func:`sinkhorn_knopp` of the teacher's
    scores at the teacher's temperature. ``forward``: per group (a pair of
    views), the weighted mean over its samples of ``-sum_k target_k *
    log_softmax(student / student_temp)_k``; the means of the groups
    with at least one counted sample are averaged (a local crop that
    shares no sampled point with a teacher view does not dilute the
    others).

    Args:
        student_temp: temperature of the student's softmax (0.1).
        sinkhorn_iters: Sinkhorn-Knopp iterations of the targets (3).
    """

    def __init__(self, student_temp: float = 0.1, sinkhorn_iters: int = 3):
        super().__init__()
        check_number('PrototypeDistillLoss', 'student_temp', student_temp)
        check_int('PrototypeDistillLoss', 'sinkhorn_iters', sinkhorn_iters)
        self.student_temp = student_temp
        self.sinkhorn_iters = sinkhorn_iters

    def targets(self, teacher_scores, weight, teacher_temp):
        """``(G, N, K)`` centred targets of ``teacher_scores (G, N, K)``."""
        return sinkhorn_knopp(teacher_scores, weight, teacher_temp,
                              self.sinkhorn_iters)

    def forward(self, student_scores, targets, weight):
        """``student_scores (G, N, K)``, ``targets (G, N, K)``, ``weight
        (G, N)`` -> the scalar loss."""
        logp = F.log_softmax(student_scores.float() / self.student_temp, -1)
        ce = -(targets * logp).sum(-1)
        w = weight.to(ce.dtype)
        count = w.sum(-1)
        per_group = (ce * w).sum(-1) / count.clamp_min(1.0)
        return per_group.sum() / (count > 0).sum().clamp_min(1)
