"""Reduction plans of sorted segments, built on the host.

When the rows of a segment reduction are sorted by segment and every
segment has rows (a tree level's points are: they are stored depth-first),
the reduction can run stage by stage with ``torch.segment_reduce``, each
thread over at most ``chunk`` rows and with no atomics
(:mod:`dbbd.models.utils.segment`). :func:`segment_plan` computes the
stage lengths with numpy; the collate function calls it in the loader
workers (through :mod:`dbbd.structures.tree_index`), and :func:`with_plan`
attaches a plan to the index tensor the reductions receive.
"""
import numpy as np

__all__ = ['PLAN_CHUNK', 'segment_plan', 'with_plan']

#: Rows one thread reduces at most per stage of a planned reduction.
PLAN_CHUNK = 64


def segment_plan(lengths, chunk: int = PLAN_CHUNK):
    """Stage lengths reducing sorted segments of ``lengths`` rows each.

    Args:
        lengths (R,) int: rows per segment, all >= 1 (numpy).
        chunk: rows per piece at each stage.

    Returns:
        list of int64 arrays: stage ``k`` reduces ``sum(stage[k])`` rows
        into ``len(stage[k])`` rows; the last stage ends with R rows.
        Each stage's entries are at most ``chunk`` except the last stage's.
    """
    cur = np.asarray(lengths, dtype=np.int64)
    if cur.size and cur.min() < 1:
        raise ValueError('segment_plan: every segment needs a row')
    stages = []
    while cur.size and cur.max() > chunk:
        pieces = -(-cur // chunk)  # per segment, ceil
        piece_len = np.full(int(pieces.sum()), chunk, dtype=np.int64)
        last = np.cumsum(pieces) - 1
        piece_len[last] = cur - chunk * (pieces - 1)
        stages.append(piece_len)
        cur = pieces
    stages.append(cur)
    return stages


def with_plan(index, plan, lengths=None):
    """``index`` carrying ``plan`` (a list of stage-length tensors on its
    device) and the rows per segment ``lengths`` (R,); None leaves it as it
    is. Returns ``index``."""
    if plan is not None:
        index.segment_plan = plan
        index.segment_lengths = lengths
    return index
