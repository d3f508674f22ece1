"""The point-encoder interface: what a user implements to add an encoder.

An encoder turns the points of many regions at once into per-point features
and one pooled feature per region. DBBD calls it once per tree level on all
regions of all scenes of the batch (G2L), and once on all leaves (L2G); it
never loops over regions, and neither should an encoder.

To add one: subclass :class:`BasePointEncoder` (or any ``nn.Module`` with
the same attributes and ``forward``), decorate it with
``@MODELS.register_module()`` and name it in the config
(``encoder=dict(type='MyEncoder', ...)``, plus
``custom_imports=dict(imports=['my_pkg.my_encoder'])`` when it lives outside
this package). DBBD passes ``in_channels`` (its ``hidden_channels``) when the
config leaves it out.
"""
from torch import nn

from ..utils import segment_max, segment_mean

__all__ = ['BasePointEncoder']

_POOLING = dict(max=segment_max, mean=segment_mean)


class BasePointEncoder(nn.Module):
    """Interface of a point encoder.

    Attributes:
        in_channels: C_in, width of ``feat``.
        out_channels: D_out, width of both outputs.

    ``forward(feat, coord, region, num_regions)``:

    Args:
        feat (M, C_in): point features (projected to DBBD's hidden width).
        coord (M, 3): coordinates, each centred on its row's region centre.
        region (M,) long: region of each row, in ``[0, R)``; rows of one
            region are usually contiguous but need not be.
        num_regions: R (a region may be empty: its pooled feature is 0).

    Returns:
        point_feat (M, D_out), region_feat (R, D_out). The result for a row
        must depend only on the rows of its own region (DBBD's equivalence
        with a region-by-region walk rests on that).
    """

    def __init__(self, in_channels, out_channels, pooling='max'):
        super().__init__()
        if pooling not in _POOLING:
            raise ValueError(f'pooling must be one of {sorted(_POOLING)}, '
                             f'got {pooling!r}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.pooling = pooling

    def pool(self, point_feat, region, num_regions):
        """(M, D) -> (R, D) by the configured pooling."""
        return _POOLING[self.pooling](point_feat, region, num_regions)

    def forward(self, feat, coord, region, num_regions):
        raise NotImplementedError
