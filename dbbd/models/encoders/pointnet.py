"""PointNet: a shared per-point MLP, then pooling per region."""
from typing import Sequence

from dbbd.registry import MODELS
from dbbd.utils.config_check import check_int, check_int_list

from ..utils import MLP
from .base import BasePointEncoder

__all__ = ['PointNetEncoder']


@MODELS.register_module()
class PointNetEncoder(BasePointEncoder):
    """Per-point MLP on ``cat(feat, coord)``, pooled per region.

    Layers: ``Linear -> LayerNorm -> GELU`` for each of ``hidden_dims``, then
    a last ``Linear`` to ``out_channels`` (no activation, so the features a
    user keeps are not clipped at zero; the pooling and the heads normalise
    downstream). LayerNorm keeps rows independent of each other.

    Args:
        in_channels: C_in.
        hidden_dims: hidden widths (method default ``[64, 128]``, small mode
            ``[32, 64]``).
        out_channels: D_out (default 96, small mode 64).
        pooling: 'max' or 'mean'.
        coord_channels: width of ``coord`` (3).

    ``forward(feat (M, C_in), coord (M, 3), region (M,), num_regions R)``
    returns ``point_feat (M, D_out), region_feat (R, D_out)``; see
    :class:`BasePointEncoder`.
    """

    def __init__(self, in_channels: int,
                 hidden_dims: Sequence[int] = (64, 128),
                 out_channels: int = 96, pooling: str = 'max',
                 coord_channels: int = 3):
        check_int('PointNetEncoder', 'in_channels', in_channels, minimum=0)
        check_int_list('PointNetEncoder', 'hidden_dims', hidden_dims)
        check_int('PointNetEncoder', 'out_channels', out_channels)
        super().__init__(in_channels, out_channels, pooling)
        self.mlp = MLP(in_channels + coord_channels, hidden_dims,
                       out_channels)

    def forward(self, feat, coord, region, num_regions):
        point_feat = self.mlp(feat, coord)
        return point_feat, self.pool(point_feat, region, num_regions)
