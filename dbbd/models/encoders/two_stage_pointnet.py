"""Two-stage PointNet: each point sees its region's pooled context."""
from typing import Sequence

from dbbd.registry import MODELS
from dbbd.utils.config_check import check_int, check_int_list

from ..utils import MLP
from .base import BasePointEncoder

__all__ = ['TwoStagePointNetEncoder']


@MODELS.register_module()
class TwoStagePointNetEncoder(BasePointEncoder):
    """PointNet, pool, concatenate the pooled feature back, PointNet, pool.

    Stage 1: ``MLP(cat(feat, coord))`` -> ``(M, first_dims[-1])``, pooled per
    region. Stage 2: ``MLP(cat(stage-1 point feature, its region's pooled
    feature))`` -> ``(M, out_channels)``, pooled again. The region feature is
    multiplied by stage 2's first layer once per region, then gathered per
    point (see :func:`dbbd.models.utils.linear_cat`).

    Args:
        in_channels: C_in.
        first_dims: widths of stage 1; the last one is its output width.
        second_dims: hidden widths of stage 2.
        out_channels: D_out.
        pooling: 'max' or 'mean' (both stages).
        coord_channels: width of ``coord`` (3).
    """

    def __init__(self, in_channels: int, first_dims: Sequence[int] = (64, 64),
                 second_dims: Sequence[int] = (128, ),
                 out_channels: int = 96, pooling: str = 'max',
                 coord_channels: int = 3):
        owner = 'TwoStagePointNetEncoder'
        check_int(owner, 'in_channels', in_channels, minimum=0)
        check_int_list(owner, 'first_dims', first_dims)
        check_int_list(owner, 'second_dims', second_dims, allow_empty=True)
        check_int(owner, 'out_channels', out_channels)
        super().__init__(in_channels, out_channels, pooling)
        mid = first_dims[-1]
        self.first = MLP(in_channels + coord_channels, first_dims[:-1], mid)
        self.second = MLP(2 * mid, second_dims, out_channels)

    def forward(self, feat, coord, region, num_regions):
        h = self.first(feat, coord)
        context = self.pool(h, region, num_regions)
        point_feat = self.second(h, (context, region))
        return point_feat, self.pool(point_feat, region, num_regions)
