"""Segmentation loss terms: auto class weights (ENet formula by hand), the
Lovász-softmax loss (a case worked out by hand, the Jaccard loss at hard
predictions, the paper's per-class reference), the weighted cross-entropy,
empty batches and mixed precision."""
import math

import pytest
import torch
import torch.nn.functional as F

from dbbd.models.losses import (LovaszSoftmaxLoss, SegCrossEntropyLoss,
                                auto_class_weight, lovasz_softmax)
from dbbd.utils.config_check import ConfigError


# ---------------------------------------------------------------------------
# auto class weights
# ---------------------------------------------------------------------------
def test_auto_class_weight_is_enet_normalised_over_present_classes():
    # 1000 labelled points: 81%, 10%, 8.7%, 0.3% and a class without any
    counts = [810, 100, 87, 3, 0]
    # by hand: w_k = 1 / ln(1.02 + f_k), f = n / 1000
    raw = [1 / math.log(1.02 + 0.810), 1 / math.log(1.02 + 0.100),
           1 / math.log(1.02 + 0.087), 1 / math.log(1.02 + 0.003)]
    # ~ [1.654, 8.799, 9.808, 43.97]: mean 16.06 over the 4 present classes
    mean = sum(raw) / 4
    want = [r / mean for r in raw] + [0.0]
    got = auto_class_weight(counts)
    assert got.dtype == torch.float32 and got.shape == (5, )
    assert got.tolist() == pytest.approx(want, rel=1e-6)
    assert got[:4].mean().item() == pytest.approx(1.0, rel=1e-6)
    # bounded: the rarest class gets ~27x the majority's, not 270x (1/f)
    assert got[3] / got[0] == pytest.approx(43.97 / 1.654, rel=1e-3)


def test_auto_class_weight_refuses_an_unlabelled_split():
    with pytest.raises(ConfigError, match='no labelled point') as err:
        auto_class_weight([0, 0, 0])
    assert '\n' not in str(err.value)


# ---------------------------------------------------------------------------
# Lovász-softmax
# ---------------------------------------------------------------------------
def _lovasz_reference(probs, labels, ignore_index=-1):
    """Berman et al.'s ``lovasz_softmax_flat`` (classes='present'), one
    class at a time on the labelled points, as in the paper's code."""
    keep = labels != ignore_index
    probs, labels = probs[keep], labels[keep]
    losses = []
    for c in range(probs.shape[1]):
        fg = (labels == c).to(probs.dtype)
        if fg.sum() == 0:
            continue
        errors = (fg - probs[:, c]).abs()
        errors_sorted, perm = torch.sort(errors, 0, descending=True)
        fg_sorted = fg[perm]
        gts = fg_sorted.sum()
        inter = gts - fg_sorted.cumsum(0)
        union = gts + (1 - fg_sorted).cumsum(0)
        jac = 1 - inter / union
        jac[1:] = jac[1:] - jac[:-1]
        losses.append(torch.dot(errors_sorted, jac))
    return torch.stack(losses).mean() if losses else probs.sum() * 0


def test_lovasz_softmax_of_a_case_worked_out_by_hand():
    """Three labelled points y = (0, 0, 1) with p(class 0) = (0.9, 0.4,
    0.3), p(class 1) = (0.1, 0.6, 0.7); a fourth point is unlabelled (its
    p(class 0) = 0.8 would come first in class 0's order if it counted) and
    a third class is absent (probability 0 on the labelled points).

    Class 0: fg = (1, 1, 0), errors |fg - p0| = (0.1, 0.6, 0.3). Sorted
    down: 0.6 (fg 1), 0.3 (fg 0), 0.1 (fg 1); G = 2. After 1, 2, 3 points:
    intersection G - cumsum(fg) = (1, 1, 0), union G + cumsum(1 - fg) =
    (2, 3, 3), Jaccard loss 1 - I/U = (1/2, 2/3, 1), its increments g =
    (1/2, 1/6, 1/3); loss_0 = 0.6/2 + 0.3/6 + 0.1/3 = 23/60.
    Class 1: fg = (0, 0, 1), errors |fg - p1| = (0.1, 0.6, 0.3). Sorted:
    0.6 (fg 0), 0.3 (fg 1), 0.1 (fg 0); G = 1: I = (1, 0, 0), U = (2, 2,
    3), 1 - I/U = (1/2, 1, 1), g = (1/2, 1/2, 0); loss_1 = 0.3 + 0.15 =
    27/60.
    Class 2 is absent: left out of the mean (counted, the mean would be
    50/180). Loss = (23/60 + 27/60) / 2 = 5/12.
    """
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.4, 0.6, 0.0],
                          [0.3, 0.7, 0.0], [0.8, 0.1, 0.1]])
    target = torch.tensor([0, 0, 1, -1])
    assert lovasz_softmax(probs, target).item() == pytest.approx(5 / 12)
    # through the registered loss: logits whose softmax is probs (class 2
    # at -inf: probability exactly 0), and a weight
    logits = probs.clamp(min=1e-30).log()
    logits[:3, 2] = -float('inf')
    loss = LovaszSoftmaxLoss(loss_weight=2.0)(logits, target)
    assert loss.item() == pytest.approx(2 * 5 / 12, rel=1e-5)


def test_lovasz_softmax_is_the_jaccard_loss_at_hard_predictions():
    """At 0/1 probabilities the Lovász extension equals the set function:
    1 - IoU per class present, averaged. y = (0, 0, 1, 2), prediction
    (0, 1, 1, 2): IoU_0 = 1/2, IoU_1 = 1/2, IoU_2 = 1 -> (1/2 + 1/2 + 0)/3
    = 1/3; perfect logits give ~0."""
    target = torch.tensor([0, 0, 1, 2])
    pred = torch.tensor([0, 1, 1, 2])
    logits = 40.0 * F.one_hot(pred, 4).float()
    loss = LovaszSoftmaxLoss()(logits, target)
    assert loss.item() == pytest.approx(1 / 3, abs=1e-6)
    perfect = LovaszSoftmaxLoss()(40.0 * F.one_hot(target, 4).float(),
                                  target)
    assert 0 <= perfect.item() < 1e-6


def test_lovasz_softmax_equals_the_per_class_reference():
    """Random batch, 6 classes of which 2 absent, a third of the points
    unlabelled: value and gradient equal the paper's per-class code."""
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(300, 6, generator=g, dtype=torch.float64)
    target = torch.randint(0, 4, (300, ), generator=g)
    target[torch.randperm(300, generator=g)[:100]] = -1
    a = logits.clone().requires_grad_(True)
    b = logits.clone().requires_grad_(True)
    ours = lovasz_softmax(F.softmax(a, 1), target)
    ref = _lovasz_reference(F.softmax(b.float(), 1), target)
    ours.backward()
    ref.backward()
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    assert torch.allclose(a.grad.float(), b.grad.float(), atol=1e-6)


def test_lovasz_softmax_gradient_is_exact_in_float32_on_many_points():
    """300,000 points: the float32 gradient equals the float64 one within
    1e-9 (the largest entries are ~1e-6); differencing the Jaccard values
    in float32 is off by ~1e-8, as its increments of ~1e-6 are a few
    float32 steps of values near 1."""
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(300_000, 3, generator=g, dtype=torch.float64)
    target = torch.randint(0, 3, (300_000, ), generator=g)
    grads = []
    for dtype in (torch.float32, torch.float64):
        x = logits.clone().requires_grad_(True)
        probs = F.softmax(x, 1).to(dtype)
        # the float64 run: the reference, differencing in float64
        loss = lovasz_softmax(probs, target) if dtype == torch.float32 \
            else _lovasz_reference(probs.double(), target)
        loss.backward()
        grads.append(x.grad)
    assert grads[1].abs().max() > 5e-7
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-9)


# ---------------------------------------------------------------------------
# cross-entropy, empty batches, mixed precision
# ---------------------------------------------------------------------------
def test_cross_entropy_weights_each_point_once():
    """sum_i w_{y_i} CE_i / sum_i w_{y_i}: PyTorch's weighted mean."""
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(50, 4, generator=g)
    target = torch.randint(0, 4, (50, ), generator=g)
    target[:7] = -1
    w = torch.tensor([0.5, 1.0, 2.0, 4.0])
    want = F.cross_entropy(logits, target, weight=w, ignore_index=-1)
    got = SegCrossEntropyLoss()(logits, target, w)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    plain = F.cross_entropy(logits, target, ignore_index=-1)
    off = SegCrossEntropyLoss(use_class_weight=False, loss_weight=3.0)
    assert off(logits, target, w).item() == pytest.approx(
        3 * plain.item(), rel=1e-5)


@pytest.mark.parametrize('term', [SegCrossEntropyLoss(),
                                  LovaszSoftmaxLoss()],
                         ids=lambda t: type(t).__name__)
def test_a_batch_without_labels_gives_zero_and_finite_gradients(term):
    logits = torch.randn(20, 5, requires_grad=True)
    loss = term(logits, torch.full((20, ), -1), torch.ones(5))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all() and not logits.grad.any()


@pytest.mark.parametrize('term', [SegCrossEntropyLoss(),
                                  LovaszSoftmaxLoss()],
                         ids=lambda t: type(t).__name__)
def test_half_precision_logits_are_read_in_float32(term):
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(64, 5, generator=g)
    target = torch.randint(-1, 5, (64, ), generator=g)
    want = term(logits, target)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        half = logits.to(torch.bfloat16).requires_grad_(True)
        got = term(half, target)
    got.backward()
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want.item(), abs=2e-2)
    assert torch.isfinite(half.grad.float()).all()


@pytest.mark.parametrize('cfg, message', [
    (dict(type='SegCrossEntropyLoss', loss_weight=-1),
     'SegCrossEntropyLoss: loss_weight must be a finite number >= 0, got -1'),
    (dict(type='LovaszSoftmaxLoss', loss_name='lovasz'),
     'LovaszSoftmaxLoss: loss_name must be a string containing "loss"'),
    (dict(type='SegCrossEntropyLoss', use_class_weight='auto'),
     'SegCrossEntropyLoss: use_class_weight must be True or False'),
])
def test_loss_terms_refuse_values_that_cannot_work(cfg, message):
    from dbbd.registry import MODELS
    with pytest.raises(ConfigError) as err:
        MODELS.build(cfg)
    assert str(err.value).startswith(message) and '\n' not in str(err.value)
