"""Loss terms of semantic segmentation, and class weights from label counts.

Every term is called as ``term(logits (P, K), target (P,), class_weight=None
or (K,)) -> ()`` on the points of a batch; points labelled ``ignore_index``
never count, and a batch without a labelled point gives 0 (not NaN), with
no host synchronisation (no ``.item()``, no boolean indexing). The logits
are read in float32 whatever the autocast dtype.

- :class:`SegCrossEntropyLoss`: (class-weighted) cross-entropy;
- :class:`LovaszSoftmaxLoss`: the Lovász-softmax surrogate of the Jaccard
  index (Berman et al., CVPR 2018);
- :func:`auto_class_weight`: the weights of ``class_weight='auto'``.
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from dbbd.registry import MODELS
from dbbd.utils.config_check import ConfigError, check_number

__all__ = ['SegCrossEntropyLoss', 'LovaszSoftmaxLoss', 'lovasz_softmax',
           'auto_class_weight', 'AUTO_WEIGHT_C']

#: ENet's constant c of ``1 / ln(c + f)`` (Paszke et al., 2016).
AUTO_WEIGHT_C = 1.02


def auto_class_weight(counts: Sequence[int]) -> torch.Tensor:
    """Class weights from the labelled points of each class.

    ``w_k = 1 / ln(c + f_k)`` with ``f_k = n_k / sum_j n_j`` the frequency
    of class k among the labelled points and ``c = 1.02`` (ENet's
    weighting), then scaled so that the weights of the present classes
    (``n_k > 0``) average 1; a class without a labelled point gets 0 (it
    never occurs as a target, so its weight is never read).

    Args:
        counts: ``(K,)`` labelled points per class (ints >= 0, at least one
            > 0).

    Returns:
        ``(K,)`` float32.

    Raises:
        ConfigError: a negative count, or no labelled point at all.
    """
    # Why ENet's 1/ln(c + f) and not 1/f or 1/sqrt(f): real scans have
    # classes a thousand times rarer than the majority (81% vs < 0.3%, and
    # classes with a handful of labelled points under labelled_points=20).
    # 1/f, and still 1/sqrt(f), grow without bound as f -> 0, so a class
    # with ten points would outweigh the majority by 10^3-10^5 and its few
    # points would dominate the gradient (noisy, unstable training). Here
    # every weight lies in (1/ln(c + 1), 1/ln c] = (1.42, 50.5]: rare
    # classes get up to ~35x the weight of a class that fills the scene
    # (81%: 1.65, 0.3%: 44.0, ratio 27), and no further.
    n = torch.as_tensor(counts, dtype=torch.float64).reshape(-1)
    if bool((n < 0).any()):
        raise ConfigError(f"class_weight='auto': negative class counts "
                          f'{n.long().tolist()}')
    total = n.sum()
    if not total > 0:
        raise ConfigError(
            "class_weight='auto': the training split has no labelled point; "
            'train on labelled scenes or give class_weight as a list')
    present = n > 0
    w = torch.where(present, 1.0 / torch.log(AUTO_WEIGHT_C + n / total),
                    torch.zeros_like(n))
    w = w * (present.sum() / w.sum())
    return w.float()


def _check_ignore_index(owner, value):
    if not (isinstance(value, int) and not isinstance(value, bool)):
        raise ConfigError(f'{owner}: ignore_index must be an int, got '
                          f'{value!r}')


def _check_loss_name(owner, value):
    if not (isinstance(value, str) and 'loss' in value):
        raise ConfigError(
            f'{owner}: loss_name must be a string containing "loss" (mmengine '
            f'sums only such log entries into the loss), got {value!r}')


class _SegLoss(nn.Module):
    """What the segmentation loss terms share: ``loss_weight`` (the factor
    of the term), ``loss_name`` (its log key) and ``ignore_index``."""

    default_name = 'loss_seg'

    def __init__(self, loss_weight: float = 1.0,
                 loss_name: Optional[str] = None, ignore_index: int = -1):
        super().__init__()
        owner = type(self).__name__
        check_number(owner, 'loss_weight', loss_weight, inclusive=True)
        loss_name = self.default_name if loss_name is None else loss_name
        _check_loss_name(owner, loss_name)
        _check_ignore_index(owner, ignore_index)
        self.loss_weight = float(loss_weight)
        self.loss_name = loss_name
        self.ignore_index = ignore_index

    def extra_repr(self) -> str:
        return (f'loss_weight={self.loss_weight}, loss_name='
                f'{self.loss_name!r}, ignore_index={self.ignore_index}')


@MODELS.register_module()
class SegCrossEntropyLoss(_SegLoss):
    """Cross-entropy over the labelled points, optionally class-weighted.

    ``loss = loss_weight * sum_i w_{y_i} CE_i / sum_i w_{y_i}`` over the
    points with ``y_i != ignore_index`` (``w = 1`` without class weights:
    the plain mean); 0 for a batch without labelled points.

    Args:
        loss_weight: factor of the term (>= 0).
        use_class_weight: apply the segmentor's ``class_weight`` (the model
            passes it; set it on the model: ``class_weight=[...]`` or
            ``'auto'``). False: unweighted, whatever the model has.
        loss_name: log key (must contain ``loss``); default ``'loss_ce'``.
        ignore_index: label of unlabelled points (the segmentor sets its
            own).

    ``forward(logits (P, K), target (P,), class_weight=None or (K,)) -> ()``.
    """

    default_name = 'loss_ce'

    def __init__(self, loss_weight: float = 1.0,
                 use_class_weight: bool = True,
                 loss_name: Optional[str] = None, ignore_index: int = -1):
        super().__init__(loss_weight, loss_name, ignore_index)
        if not isinstance(use_class_weight, bool):
            raise ConfigError(f'SegCrossEntropyLoss: use_class_weight must be '
                              f'True or False, got {use_class_weight!r}')
        self.use_class_weight = use_class_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                class_weight: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        logits = logits.float()
        valid = target != self.ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target))
        # per point, unweighted; the class weights enter once, below
        per_point = F.cross_entropy(logits, safe, reduction='none')
        weight = valid.to(per_point.dtype)
        if class_weight is not None and self.use_class_weight:
            weight = weight * class_weight.to(per_point.dtype)[safe]
        # a batch without labelled points gives 0, not NaN (no host sync)
        loss = (per_point * weight).sum() / weight.sum().clamp(min=1e-12)
        return self.loss_weight * loss


def lovasz_softmax(probs: torch.Tensor, target: torch.Tensor,
                   ignore_index: int = -1) -> torch.Tensor:
    """Lovász-softmax loss (Berman, Rannen Triki, Blaschko, CVPR 2018, Alg. 1
    with the "present classes" average), all classes at once.

    For each class c: the errors ``m_i(c) = |[y_i = c] - p_i(c)|`` of the
    labelled points, sorted in decreasing order (permutation pi), and the
    Lovász extension of the Jaccard loss
    ``Delta_J(c) = 1 - |{y = c} & {pred = c}| / |{y = c} | {pred = c}|``
    evaluated there: ``loss_c = sum_i m_pi(i)(c) g_i(c)`` with
    ``g_i = Delta_J({pi_1..pi_i}) - Delta_J({pi_1..pi_(i-1)})``, where for
    the first i sorted points ``Delta_J = 1 - (G - cumsum(fg)_i) / (G +
    cumsum(1 - fg)_i)``, G the number of points of class c (the increments
    are computed in closed form, exact in float32). The result is
    the mean of ``loss_c`` over the classes present among the labelled
    points (0 when there is none).

    The classes are sorted together (one ``torch.sort`` along the points of
    the ``(P, K)`` errors); the ignored points get error 0 and take no part
    in any class, so they sort after every point with a positive error and
    change nothing, without boolean indexing (no host synchronisation).

    Args:
        probs: ``(P, K)`` class probabilities (a softmax).
        target: ``(P,)`` labels in ``[0, K)`` or ``ignore_index``.
        ignore_index: label of unlabelled points.

    Returns:
        ``()`` float32.
    """
    probs = probs.float()
    k = probs.shape[1]
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target))
    fg = F.one_hot(safe, k).to(probs.dtype) * valid.unsqueeze(1).to(
        probs.dtype)                                           # (P, K)
    errors = torch.where(valid.unsqueeze(1), (fg - probs).abs(),
                         torch.zeros_like(probs))
    errors_sorted, perm = torch.sort(errors, dim=0, descending=True)
    fg_sorted = fg.gather(0, perm)
    gts = fg_sorted.sum(0)                                     # (K,)
    intersection = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)  # >= 1 at every position
    # The increments g_i = J_i - J_(i-1) of J = 1 - I/U in closed form:
    # a point of the class lowers I by one (g = 1/U_i), another raises U
    # by one (g = I_i/(U_(i-1) U_i)); before the first point I = U = G,
    # J = 0. The same values as differencing J, but without its float32
    # cancellation: on a million points the increments (~1e-6) are a few
    # float32 steps of J (~6e-8), and differencing would get them wrong by
    # tens of percent.
    union_before = torch.cat([gts.unsqueeze(0), union[:-1]], 0).clamp(
        min=1.0)  # G = 0 (an absent class, left out below): I = 0, g = 0
    grad = fg_sorted / union + (1.0 - fg_sorted) * intersection / (
        union * union_before)
    per_class = (errors_sorted * grad).sum(0)                  # (K,)
    present = (gts > 0).to(per_class.dtype)
    return (per_class * present).sum() / present.sum().clamp(min=1.0)


@MODELS.register_module()
class LovaszSoftmaxLoss(_SegLoss):
    """The Lovász-softmax loss: a convex surrogate of 1 - IoU, averaged over
    the classes present in the batch (:func:`lovasz_softmax`), on the
    softmax of the logits.

    It weighs every present class the same whatever its number of points,
    so it takes no class weights (the model's are ignored). Pointcept's
    recipe adds it to the cross-entropy with weight 1.

    Args:
        loss_weight: factor of the term (>= 0).
        loss_name: log key (must contain ``loss``); default
            ``'loss_lovasz'``.
        ignore_index: label of unlabelled points (the segmentor sets its
            own).

    ``forward(logits (P, K), target (P,), class_weight=None) -> ()``.
    """

    default_name = 'loss_lovasz'

    def forward(self, logits: torch.Tensor, target: torch.Tensor,
                class_weight: Optional[torch.Tensor] = None
                ) -> torch.Tensor:
        probs = F.softmax(logits.float(), dim=1)
        return self.loss_weight * lovasz_softmax(probs, target,
                                                 self.ignore_index)
