"""G2L propagator: a parent region's feature becomes context for its points."""
from dbbd.registry import MODELS
from dbbd.utils.config_check import check_int
from torch import nn

from ..utils import MLP

__all__ = ['MLPPropagator']


@MODELS.register_module()
class MLPPropagator(nn.Module):
    """``Linear -> LayerNorm -> GELU -> Linear`` of ``cat(parent, coord)``.

    Method default ``in_channels + 3 -> 128 -> 96``.

    Args:
        in_channels: width of the parent region feature (the encoder's
            output width; DBBD fills it in when left out).
        hidden_channels: hidden width (128; small mode 64).
        out_channels: width of the per-point context (96; small mode 64).
        coord_channels: 3.

    ``forward(parent_feat, coord, parent)``:

    Args:
        parent_feat (R_p, in_channels): features of the parent regions.
        coord (M, 3): each point's coordinates relative to its PARENT
            region's centre.
        parent (M,) long: each point's parent region, in ``[0, R_p)``.

    Returns:
        context (M, out_channels). Equal to
        ``mlp(cat(parent_feat[parent], coord))``; the parent part of the
        first layer is computed per region, then gathered.
    """

    def __init__(self, in_channels: int, hidden_channels: int = 128,
                 out_channels: int = 96, coord_channels: int = 3):
        super().__init__()
        check_int('MLPPropagator', 'in_channels', in_channels, minimum=0)
        check_int('MLPPropagator', 'hidden_channels', hidden_channels)
        check_int('MLPPropagator', 'out_channels', out_channels)
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mlp = MLP(in_channels + coord_channels, [hidden_channels],
                       out_channels)

    def forward(self, parent_feat, coord, parent):
        return self.mlp((parent_feat, parent), coord)
