"""Segment reductions against per-segment loops."""
import pytest
import torch

from dbbd.models.utils import (segment_count, segment_max, segment_mean,
                               segment_softmax, segment_sum)


def _data(m=200, r=13, d=5, sort=False, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    index = torch.randint(0, r - 2, (m, ), generator=g)  # last 2 empty
    if sort:
        index = index.sort().values
    x = torch.randn(m, d, generator=g, dtype=dtype)
    return x, index, r


def _loop(x, index, r, fn):
    rows = []
    for s in range(r):
        sel = x[index == s]
        rows.append(fn(sel) if len(sel) else x.new_zeros(x.shape[1:]))
    return torch.stack(rows)


@pytest.mark.parametrize('sort', [False, True])
def test_sum_mean_max_match_a_loop(sort):
    x, index, r = _data(sort=sort)
    torch.testing.assert_close(segment_sum(x, index, r),
                               _loop(x, index, r, lambda s: s.sum(0)))
    torch.testing.assert_close(segment_mean(x, index, r),
                               _loop(x, index, r, lambda s: s.mean(0)))
    torch.testing.assert_close(segment_max(x, index, r),
                               _loop(x, index, r, lambda s: s.max(0).values))
    assert segment_count(index, r).tolist() == [
        int((index == s).sum()) for s in range(r)]


@pytest.mark.parametrize('sort', [False, True])
def test_max_gradient_goes_to_the_argmax_rows(sort):
    x, index, r = _data(sort=sort)
    w = torch.randn(r, x.shape[1], dtype=x.dtype)
    a = x.clone().requires_grad_()
    (segment_max(a, index, r) * w).sum().backward()
    b = x.clone().requires_grad_()
    (_loop(b, index, r, lambda s: s.max(0).values) * w).sum().backward()
    torch.testing.assert_close(a.grad, b.grad)
    # exactly one row per (segment, channel) gets a gradient
    nonempty = int((segment_count(index, r) > 0).sum())
    assert int((a.grad != 0).sum()) == nonempty * x.shape[1]


def test_max_ties_send_the_gradient_once():
    x = torch.ones(4, 2, requires_grad=True)
    index = torch.tensor([0, 0, 1, 1])
    segment_max(x, index, 2).sum().backward()
    assert x.grad.tolist() == [[1, 1], [0, 0], [1, 1], [0, 0]]


def test_sum_mean_gradcheck():
    x, index, r = _data(m=30, r=6, d=3)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda t: segment_sum(t, index, r), x)
    assert torch.autograd.gradcheck(lambda t: segment_mean(t, index, r), x)
    s = x[:, 0].detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda t: segment_softmax(t, index, r), s)


@pytest.mark.parametrize('shape', [(200, ), (200, 3)])
def test_softmax_sums_to_one_per_segment(shape):
    g = torch.Generator().manual_seed(1)
    index = torch.randint(0, 11, (200, ), generator=g)
    score = torch.randn(*shape, generator=g) * 30  # large: needs the shift
    w = segment_softmax(score, index, 12)
    assert torch.isfinite(w).all()
    total = segment_sum(w, index, 12)
    nonempty = segment_count(index, 12) > 0
    torch.testing.assert_close(total[nonempty],
                               torch.ones_like(total[nonempty]))
    ref = _loop(score.view(200, -1), index, 12,
                lambda s: torch.softmax(s, 0).sum(0))
    assert torch.allclose(ref[nonempty], torch.ones_like(ref[nonempty]))


def test_empty_input_and_float32():
    x = torch.zeros(0, 4, requires_grad=True)
    idx = torch.zeros(0, dtype=torch.long)
    out = segment_max(x, idx, 3)
    assert out.shape == (3, 4) and not out.any()
    out.sum().backward()
    assert x.grad.shape == (0, 4)
    x32, index, r = _data(dtype=torch.float32)
    torch.testing.assert_close(segment_max(x32, index, r),
                               _loop(x32, index, r, lambda s: s.max(0).values))
