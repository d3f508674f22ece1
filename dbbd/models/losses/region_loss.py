"""Region loss: G2L and L2G readings of each region should agree."""
from typing import Optional, Sequence

from dbbd.registry import MODELS
from dbbd.utils.config_check import check_int, check_number
from torch import nn

from .info_nce import InfoNCELoss

__all__ = ['RegionLoss']


@MODELS.register_module()
class RegionLoss(nn.Module):
    """InfoNCE per level between the two branches' region embeddings.

    Per level ``l``, all regions of all scenes of the batch contrast with
    each other (the positive of a G2L region is the L2G reading of the same
    region). The result is the weighted mean over levels.

    A level with fewer than ``min_regions`` regions (2 by default) is
    skipped: with one region the InfoNCE is exactly 0 (nothing to contrast),
    and counting it would only shrink the mean. The weights of the levels
    that count are renormalised to sum to 1. When no level counts (one
    scene whose tree is a single region) the loss is 0, still attached to
    the graph so that ``backward`` works.

    Args:
        temperature: InfoNCE temperature (0.1).
        level_weights: one weight per level (index = level); None = equal.
            Must cover every level of the batch.
        min_regions: smallest level that counts.

    ``forward(q, k)``: ``q`` and ``k`` are lists over levels of
    ``(R_l, E)`` embeddings, same regions in the same order. Returns
    ``(loss (), per_level: dict level -> ())`` (counted levels only).
    """

    def __init__(self, temperature: float = 0.1,
                 level_weights: Optional[Sequence[float]] = None,
                 min_regions: int = 2):
        super().__init__()
        check_number('RegionLoss', 'temperature', temperature)
        check_int('RegionLoss', 'min_regions', min_regions)
        self.info_nce = InfoNCELoss(temperature)
        self.level_weights = None if level_weights is None else [
            float(w) for w in level_weights]
        self.min_regions = min_regions

    def forward(self, q, k):
        if len(q) != len(k):
            raise ValueError(f'{len(q)} G2L levels but {len(k)} L2G levels')
        if self.level_weights is not None and \
                len(self.level_weights) < len(q):
            raise ValueError(f'level_weights has {len(self.level_weights)} '
                             f'entries for {len(q)} levels')
        per_level, total, weight_sum = {}, None, 0.0
        for l, (q_l, k_l) in enumerate(zip(q, k)):
            if q_l.shape[0] < self.min_regions:
                continue
            per_level[l] = self.info_nce(q_l, k_l)
            w = 1.0 if self.level_weights is None else self.level_weights[l]
            term = w * per_level[l]
            total = term if total is None else total + term
            weight_sum += w
        if total is None:
            return sum(x.sum() for x in q + k) * 0.0, per_level
        return total / weight_sum, per_level
