"""Segment reductions against per-segment loops."""
import pytest
import torch
from torch.multiprocessing.reductions import StorageWeakRef
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

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
def test_softmax_equals_a_softmax_per_segment(shape):
    g = torch.Generator().manual_seed(1)
    index = torch.randint(0, 11, (200, ), generator=g)
    score = torch.randn(*shape, generator=g) * 30  # large: needs the shift
    w = segment_softmax(score, index, 12)
    assert torch.isfinite(w).all()
    # torch.softmax over the rows of each segment, written out here
    want = torch.empty_like(score)
    for s in range(12):
        rows = (index == s).nonzero().squeeze(1)
        if len(rows):
            want[rows] = torch.softmax(score[rows], 0)
    torch.testing.assert_close(w, want)


def test_softmax_gradient_equals_the_per_segment_softmax():
    g = torch.Generator().manual_seed(2)
    index = torch.randint(0, 5, (40, ), generator=g)
    score = torch.randn(40, generator=g, dtype=torch.float64)
    up = torch.randn(40, generator=g, dtype=torch.float64)
    a = score.clone().requires_grad_()
    (segment_softmax(a, index, 5) * up).sum().backward()
    b = score.clone().requires_grad_()
    parts = [torch.softmax(b[index == s], 0) * up[index == s]
             for s in range(5)]
    sum(p.sum() for p in parts).backward()
    torch.testing.assert_close(a.grad, b.grad)


class _LiveBytes(TorchDispatchMode):
    """Peak bytes of the tensors created inside the mode that are alive at
    once (storages tracked with weak references, read after every op);
    views of the ``inputs`` do not count."""

    def __init__(self, *inputs):
        super().__init__()
        self.inputs = {t.untyped_storage().data_ptr() for t in inputs}
        self.storages = {}
        self.peak = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                st = t.untyped_storage()
                if st.data_ptr() in self.inputs:
                    continue
                self.storages.setdefault(
                    st.data_ptr(), (StorageWeakRef(st), st.nbytes()))
        live = sum(n for ref, n in self.storages.values()
                   if not ref.expired())
        self.peak = max(self.peak, live)
        return out


@pytest.mark.parametrize('reduce', ['max', 'softmax'])
def test_pooling_transient_memory_is_at_most_two_row_tensors(reduce):
    """segment_max (with what its backward keeps) and the attention
    softmax allocate at most 2 x (M, D) floats besides their inputs (and
    two per-segment (R, D) buffers). Measured before they were rewritten
    in place: the softmax took 3.0 x (M, D)."""
    m, d, r = 20000, 32, 500
    g = torch.Generator().manual_seed(3)
    index = torch.randint(0, r, (m, ), generator=g).sort().values
    x = torch.randn(m, d, generator=g).requires_grad_()
    mode = _LiveBytes(x, index)
    with mode:
        if reduce == 'max':
            out = segment_max(x, index, r)
        else:
            out = segment_softmax(x, index, r)
    del out
    assert mode.peak <= 2 * m * d * 4 + 2 * r * d * 4, \
        mode.peak / (m * d * 4)


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


@pytest.mark.parametrize('chunk', [3, 64])
def test_planned_reduction_equals_the_scatter_one(chunk):
    """The GPU path (torch.segment_reduce stage by stage along a plan of
    sorted segments), run here on the CPU, against the scatter path."""
    from dbbd.models.utils.segment import staged_segment_reduce
    from dbbd.structures.segment_plan import segment_plan
    g = torch.Generator().manual_seed(4)
    lengths = torch.tensor([1, 7, 2, 40, 5, 1, 13])
    index = torch.repeat_interleave(torch.arange(7), lengths)
    x = torch.randn(int(lengths.sum()), 6, generator=g, dtype=torch.float64)
    plan = [torch.from_numpy(s) for s in segment_plan(lengths.numpy(),
                                                       chunk)]
    assert int(plan[0].sum()) == len(x) and len(plan[-1]) == 7
    assert all(int(s.max()) <= chunk for s in plan[:-1])
    assert (len(plan) > 2) == (chunk == 3)  # 40 rows: 14 pieces, 5, ...
    for reduce, ref in (('max', segment_max), ('sum', segment_sum)):
        a = x.clone().requires_grad_()
        b = x.clone().requires_grad_()
        w = torch.randn(7, 6, generator=g, dtype=torch.float64)
        got = staged_segment_reduce(a, plan, reduce)
        want = ref(b, index, 7)
        torch.testing.assert_close(got, want)
        (got * w).sum().backward()
        (want * w).sum().backward()
        torch.testing.assert_close(a.grad, b.grad)
    with pytest.raises(ValueError, match='every segment'):
        segment_plan([3, 0, 2])


def test_tree_index_plans_cover_every_level_and_the_leaves():
    from model_helpers import make_batch
    tree = make_batch(dict(n=800, max_depth=3, min_points_to_split=40),
                      dict(n=500, max_depth=2))['inputs']['tree']
    for lv in tree.levels:
        assert lv.region_plan is not None
        assert torch.equal(lv.region_lengths,
                           torch.bincount(lv.region, minlength=lv.num_regions))
        assert int(lv.region_plan[0].sum()) == lv.num_rows
    # leaves numbered in point order: sorted, one plan
    assert bool((tree.leaf_region[1:] >= tree.leaf_region[:-1]).all())
    assert int(tree.leaf_plan[0].sum()) == tree.num_points
    assert sorted(torch.cat(tree.leaf_pos).tolist()) == list(
        range(tree.num_leaves))
