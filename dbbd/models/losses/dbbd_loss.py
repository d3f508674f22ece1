"""The DBBD objective: ``alpha * region + beta * point``."""
from typing import Optional

from dbbd.registry import MODELS
from dbbd.utils.config_check import check_number
from torch import nn

__all__ = ['DBBDLoss']


@MODELS.register_module()
class DBBDLoss(nn.Module):
    """Combine the region and point losses into mmengine's loss dict.

    mmengine's ``BaseModel.parse_losses`` sums every key that contains
    ``'loss'`` into the optimised (and logged) ``loss``; so exactly the two
    weighted terms carry ``'loss'`` in their names and the logged total is
    ``loss_region + loss_point = alpha * region + beta * point``. Each
    quantity is logged under one name: the weighted terms, and the
    (unweighted) InfoNCE of each region level as ``region_l{l}``.

    Args:
        alpha: weight of the region loss (1.0).
        beta: weight of the point loss (0.5).
        region_loss: config of the region loss (default
            ``dict(type='RegionLoss')``).
        point_loss: config of the point loss (default
            ``dict(type='PointLoss')``).

    ``forward(region_q, region_k, point_q, point_k, sample_order,
    point_head=None, key_point_head=None)``:

    Args:
        region_q, region_k: lists over levels of ``(R_l, E)`` region
            embeddings (G2L, L2G).
        point_q, point_k (P, D): point features (G2L, L2G), before the
            point head.
        sample_order (P,) long: the batch's seeded point permutation
            (``inputs['sample_order']``); the point loss uses its head.
        point_head: applied to the sampled point features.
        key_point_head: applied to the sampled ``point_k`` instead of
            ``point_head`` when given (an EMA teacher's head).

    Returns:
        dict: ``loss_region`` (alpha * region), ``loss_point``
        (beta * point) and ``region_l{l}`` for each level that counts (see
        :class:`RegionLoss`), all 0-d tensors.
    """

    def __init__(self, alpha: float = 1.0, beta: float = 0.5,
                 region_loss: Optional[dict] = None,
                 point_loss: Optional[dict] = None):
        super().__init__()
        check_number('DBBDLoss', 'alpha', alpha, inclusive=True)
        check_number('DBBDLoss', 'beta', beta, inclusive=True)
        self.alpha = alpha
        self.beta = beta
        self.region_loss = MODELS.build(region_loss
                                        or dict(type='RegionLoss'))
        self.point_loss = MODELS.build(point_loss or dict(type='PointLoss'))

    def forward(self, region_q, region_k, point_q, point_k, sample_order,
                point_head=None, key_point_head=None):
        region, per_level = self.region_loss(region_q, region_k)
        point = self.point_loss(point_q, point_k, sample_order, point_head,
                                key_point_head)
        out = dict(loss_region=self.alpha * region,
                   loss_point=self.beta * point)
        out.update({f'region_l{l}': v.detach() for l, v in per_level.items()})
        return out
