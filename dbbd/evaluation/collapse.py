"""Collapse watch: is the contrastive space still spread out?

Three measures on L2-normalised embeddings ``z`` of width ``D``:

- ``std``: the mean over dimensions of the standard deviation of ``z``
  across samples. About ``1 / sqrt(D)`` when the embeddings spread over the
  sphere, 0 when they all collapse to one point.
- ``align`` (Wang & Isola, 2020): ``E ||f(x) - f(y)||^2`` over positive
  pairs, here the G2L and the L2G embedding of the same region / point.
  0 is perfect agreement, 4 the opposite poles, 2 unrelated directions.
- ``uniform`` (Wang & Isola, 2020): ``log E exp(-2 ||f(x) - f(y)||^2)``
  over pairs of different samples (of one branch, averaged over the two
  branches). 0 when collapsed; about -4 for points spread uniformly on a
  high-dimensional sphere (lower is more uniform).

A collapsed model has ``align`` 0 (trivially) together with ``std`` near 0
and ``uniform`` near 0: that combination is what :class:`CollapseStats`
flags.

``dbbd.engine.hooks.CollapseWatchHook`` streams the embeddings that
``DBBD.predict`` returns with ``return_embeddings`` (those its loss compared)
into :class:`CollapseStats` at every validation.
"""
import math
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

__all__ = ['embedding_std', 'alignment', 'uniformity', 'CollapseStats']


def _unit(z: torch.Tensor) -> torch.Tensor:
    return F.normalize(z.detach().double(), dim=-1)


def embedding_std(z: torch.Tensor) -> float:
    """Mean per-dimension std of the normalised embeddings ``z (N, D)``."""
    return float(_unit(z).std(0, unbiased=False).mean())


def alignment(a: torch.Tensor, b: torch.Tensor, alpha: float = 2) -> float:
    """``E ||a_i - b_i||^alpha`` of normalised positive pairs (N, D)."""
    return float((_unit(a) - _unit(b)).norm(dim=1).pow(alpha).mean())


def _pair_exp_sum(z: torch.Tensor, t: float, max_points: int,
                  generator: Optional[torch.Generator]) -> Tuple[float, int]:
    z = _unit(z)
    if z.shape[0] > max_points:
        idx = torch.randperm(z.shape[0], generator=generator)[:max_points]
        z = z[idx.to(z.device)]
    if z.shape[0] < 2:
        return 0.0, 0
    d2 = torch.pdist(z).pow(2)
    return float(d2.mul(-t).exp().sum()), int(d2.numel())


def uniformity(z: torch.Tensor, t: float = 2, max_points: int = 2048,
               seed: int = 0) -> float:
    """``log E exp(-t ||z_i - z_j||^2)`` over pairs ``i < j`` of (a random
    subset of ``max_points`` of) the normalised ``z (N, D)``."""
    g = torch.Generator().manual_seed(seed)
    s, n = _pair_exp_sum(z, t, max_points, g)
    return math.log(s / n) if n else float('nan')


class _Branch:
    """Running per-dimension sums of one branch's normalised embeddings."""

    def __init__(self):
        self.n = 0
        self.s = None
        self.s2 = None
        self.exp_sum = 0.0
        self.pairs = 0

    def add(self, z):
        z = _unit(z).cpu()
        if self.s is None:
            self.s = torch.zeros(z.shape[1], dtype=torch.float64)
            self.s2 = torch.zeros(z.shape[1], dtype=torch.float64)
        self.s += z.sum(0)
        self.s2 += z.pow(2).sum(0)
        self.n += z.shape[0]

    def std(self):
        mean = self.s / self.n
        return float((self.s2 / self.n - mean.pow(2)).clamp(min=0).sqrt()
                     .mean())


class CollapseStats:
    """Streams ``std``, ``align`` and ``uniform`` of pairs of embeddings.

    ``update(g2l, l2g)`` with two ``(N, D)`` tensors of the same samples
    (rows match) may be called batch after batch; ``compute()`` returns
    ``std`` (G2L branch), ``std_l2g``, ``align``, ``uniform`` (pairs within
    each batch, up to ``max_uniform_points`` per batch and branch) and
    ``dim``. Empty when nothing was added.

    Args:
        max_uniform_points: samples per batch and branch entering the
            pairwise uniformity (memory ``O(max_uniform_points ** 2)``).
        seed: seed of that subsampling.
    """

    def __init__(self, max_uniform_points: int = 1024, seed: int = 0):
        self.max_uniform_points = max_uniform_points
        self.generator = torch.Generator().manual_seed(seed)
        self.branches = (_Branch(), _Branch())
        self.align_sum = 0.0
        self.align_n = 0
        self.dim = None

    def update(self, g2l: torch.Tensor, l2g: torch.Tensor) -> None:
        if g2l.shape != l2g.shape:
            raise ValueError(f'CollapseStats: G2L {tuple(g2l.shape)} and L2G '
                             f'{tuple(l2g.shape)} embeddings differ in shape')
        if g2l.shape[0] == 0:
            return
        self.dim = g2l.shape[1]
        self.align_sum += float((_unit(g2l) - _unit(l2g)).pow(2).sum())
        self.align_n += g2l.shape[0]
        for branch, z in zip(self.branches, (g2l, l2g)):
            branch.add(z)
            s, n = _pair_exp_sum(z, 2.0, self.max_uniform_points,
                                 self.generator)
            branch.exp_sum += s
            branch.pairs += n

    def compute(self) -> Dict[str, float]:
        if not self.align_n:
            return {}
        g, l = self.branches
        uniform = [math.log(b.exp_sum / b.pairs) for b in (g, l) if b.pairs]
        out = dict(std=g.std(), std_l2g=l.std(),
                   align=self.align_sum / self.align_n, dim=self.dim)
        if uniform:
            out['uniform'] = sum(uniform) / len(uniform)
        return out
