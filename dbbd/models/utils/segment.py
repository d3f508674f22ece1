"""Segment reductions: rows of a ``(M, D)`` tensor grouped by a segment id.

A tree level is a partition of points into regions, so pooling a whole level
of a whole batch is one segment reduction. These functions take a segment id
per row (``index (M,)`` long in ``[0, num_segments)``) and need no sorting.

Why scatter and not ``torch.segment_reduce``: points are stored depth-first,
so each region's rows are contiguous and ``segment_reduce`` (lengths) would
apply, but measured on 2 CPU threads for ``(80000, 96)`` rows in 5000
segments, ``scatter_reduce`` with a stride-0 (expanded) index took 1 ms
forward against 10 ms, sorted or not (3 ms on shuffled rows). The
autograd of ``scatter_reduce(amax)`` is the slow part (70 ms backward), so
:func:`segment_max` has its own backward that sends each output's gradient
to one argmax row, found once in the forward pass (11 ms, the argmax map is
``(R, D)``: no ``(M, D)`` tensor is kept for backward).

Empty segments reduce to 0 for every reduction.

On a GPU, ``scatter_reduce(amax)`` serialises on atomics: with a whole
scene in one root region, 100,000 rows compete for each output entry (a
third of a DBBD step on an H200 went there). When the rows are sorted by
segment, every segment non-empty (the tree levels are: points are stored
depth-first), the index tensor can carry a *plan*
(:func:`~dbbd.structures.segment_plan.segment_plan`, built on the host by
the collate function and attached with
:func:`~dbbd.structures.segment_plan.with_plan`): the lengths of
consecutive pieces of at most ``chunk`` rows, then of pieces of pieces,
down to one row per segment.
:func:`segment_max`, :func:`segment_sum` and :func:`segment_mean` then
reduce on the device with ``torch.segment_reduce`` stage by stage, each
thread over at most ``chunk`` rows, with no atomics. On the CPU the
scatter path stays (faster there).
"""
import math

import torch

from dbbd.structures.segment_plan import segment_plan, with_plan

__all__ = [
    'segment_sum', 'segment_mean', 'segment_max', 'segment_softmax',
    'segment_count', 'segment_plan', 'with_plan', 'staged_segment_reduce'
]

def _plan_of(index, src):
    plan = getattr(index, 'segment_plan', None)
    if plan is None or src.device.type == 'cpu':
        return None
    return plan


def staged_segment_reduce(src, plan, reduce: str):
    """``torch.segment_reduce`` of sorted segments, stage by stage along
    ``plan`` (see :func:`~dbbd.structures.segment_plan.segment_plan`);
    ``reduce`` is 'max' or 'sum'.
    Its gradient is ``segment_reduce``'s (for 'max', ties share it)."""
    out = src
    for lengths in plan:
        out = torch.segment_reduce(out, reduce, lengths=lengths, axis=0,
                                   unsafe=True)
    return out


def _expand_index(index, src):
    """``index (M,)`` viewed as ``src``'s shape: a stride-0 view, no copy."""
    return index.view(-1, *([1] * (src.dim() - 1))).expand_as(src)


def segment_count(index, num_segments):
    """Rows per segment: ``(num_segments,)`` long.

    ``index_add_`` of ones, not ``bincount``: the size of bincount's result
    depends on the largest id, which the host has to read back from the
    device (a synchronisation); here the size is ``num_segments``.
    """
    ones = torch.ones_like(index)
    return index.new_zeros(num_segments).index_add_(0, index, ones)


def segment_sum(src, index, num_segments):
    """Sum of the rows of each segment.

    Args:
        src (M, *): rows.
        index (M,) long: segment of each row, in ``[0, num_segments)``.
        num_segments: R.

    Returns:
        (R, *): per-segment sums; 0 for empty segments. Gradients flow to
        every row.
    """
    plan = _plan_of(index, src)
    if plan is not None:
        return staged_segment_reduce(src, plan, 'sum')
    out = src.new_zeros((num_segments, *src.shape[1:]))
    return out.index_add_(0, index, src)


def segment_mean(src, index, num_segments, count=None):
    """Mean of the rows of each segment; ``(R, *)``, 0 for empty segments.

    ``count (R,)`` may be passed when already known (see
    :func:`segment_count`).
    """
    if count is None:
        count = getattr(index, 'segment_lengths', None) if _plan_of(
            index, src) is not None else None
    if count is None:
        count = segment_count(index, num_segments)
    total = segment_sum(src, index, num_segments)
    denom = count.clamp(min=1).to(src.dtype)
    return total / denom.view(-1, *([1] * (src.dim() - 1)))


class _SegmentMax(torch.autograd.Function):
    """Segment max whose gradient goes to one argmax row per output."""

    @staticmethod
    def forward(ctx, src, index, num_segments):
        flat = src.reshape(src.shape[0], math.prod(src.shape[1:]))
        idx = _expand_index(index, flat)
        out = flat.new_zeros((num_segments, flat.shape[1]))
        # include_self=False: a segment's max is over its rows only; empty
        # segments keep the 0 they started with.
        out.scatter_reduce_(0, idx, flat, 'amax', include_self=False)
        ctx.src_shape = src.shape
        if ctx.needs_input_grad[0]:
            # Argmax: the first row equal to its segment's max. Row numbers
            # travel as floats because float scatter_reduce is vectorised
            # (4x faster than int32 here); float32 is exact below 2**24 rows.
            # Transient memory: one (M, D) buffer (the gathered maxima,
            # then the candidate rows, written in place) and an (M, D) bool
            # mask: 1.25 x (M, D) floats, no more.
            m = flat.shape[0]
            rdt = torch.float32 if m < 2 ** 24 else torch.float64
            rows = torch.arange(m, device=src.device, dtype=rdt).view(-1, 1)
            buf = out.index_select(0, index)
            hit = torch.eq(flat, buf)
            if buf.dtype != rdt:
                del buf
                buf = torch.empty(flat.shape, dtype=rdt, device=src.device)
            cand = torch.where(hit, rows, rows.new_full((), float(m)),
                               out=buf)
            del hit
            arg = torch.full_like(out, float(m), dtype=rdt)
            arg.scatter_reduce_(0, idx, cand, 'amin')
            del cand, buf
            # empty segments (and NaN rows) point nowhere: their gradient
            # is zeroed in backward and sent to row 0, adding nothing.
            empty = arg >= m
            ctx.save_for_backward(arg.masked_fill_(empty, 0).long(), empty)
        return out.view(num_segments, *src.shape[1:])

    @staticmethod
    def backward(ctx, grad_out):
        arg, empty = ctx.saved_tensors
        g = grad_out.reshape(empty.shape).masked_fill(empty, 0)
        grad = g.new_zeros((ctx.src_shape[0], g.shape[1]))
        if grad.shape[0]:  # with no rows every segment is empty
            grad.scatter_add_(0, arg, g)
        return grad.view(ctx.src_shape), None, None


def segment_max(src, index, num_segments):
    """Max of the rows of each segment, per channel.

    Args:
        src (M, *): rows.
        index (M,) long: segment of each row, in ``[0, num_segments)``.
        num_segments: R.

    Returns:
        (R, *): per-segment, per-channel max; 0 for empty segments. The
        gradient of each output entry goes to the first row (lowest index)
        that attains the max, as in ``torch.max(dim)``.
    """
    plan = _plan_of(index, src)
    if plan is not None:
        return staged_segment_reduce(src, plan, 'max')
    return _SegmentMax.apply(src, index, num_segments)


class _SegmentSoftmax(torch.autograd.Function):
    """Softmax within segments, computed in place: the forward pass holds
    at most two ``score``-sized buffers at once and keeps only its output
    for backward (``grad = w * (g - sum_segment(w * g))``)."""

    @staticmethod
    def forward(ctx, score, index, num_segments):
        idx = _expand_index(index, score)
        peak = score.new_zeros((num_segments, *score.shape[1:]))
        # the per-segment max only stabilises exp(); softmax does not
        # depend on it
        peak.scatter_reduce_(0, idx, score, 'amax', include_self=False)
        w = peak.index_select(0, index)
        del peak
        torch.sub(score, w, out=w).exp_()
        denom = segment_sum(w, index, num_segments)
        w.div_(denom.index_select(0, index))
        ctx.num_segments = num_segments
        ctx.save_for_backward(w, index)
        return w

    @staticmethod
    def backward(ctx, grad):
        w, index = ctx.saved_tensors
        dot = segment_sum(w * grad, index, ctx.num_segments)
        out = dot.index_select(0, index)
        torch.sub(grad, out, out=out).mul_(w)
        return out, None, None


def segment_softmax(score, index, num_segments):
    """Softmax of ``score`` within each segment.

    Args:
        score (M,) or (M, H): one score (or H scores) per row.
        index (M,) long: segment of each row.
        num_segments: R.

    Returns:
        Same shape as ``score``: weights that sum to 1 over the rows of each
        (non-empty) segment. Transient memory: two ``score``-sized buffers.
    """
    return _SegmentSoftmax.apply(score, index, num_segments)
