"""PointNet as a scene backbone: per-point features from each point and its
scene's global feature.

The *scene backbone* interface (SpUNet implements it too): a registered
module with ``in_channels``, ``out_channels`` and
``forward(coord (P, 3), feat (P, C), offset (B + 1,)) -> (P, out_channels)``
over a whole batch of scenes (``offset`` are the scene boundaries). It sees
no region tree; ``DBBDTreeBackbone(scene_backbone=...)`` runs it once per
view and reads the tree on its features, and the segmentation and
point-contrast models use it directly.
"""
from typing import Sequence

import torch
from torch import nn

from dbbd.registry import MODELS
from dbbd.utils.config_check import check_int, check_int_list

from ..utils import MLP, segment_max, segment_mean

__all__ = ['PointNetSceneBackbone', 'scene_index']


def scene_index(offset: torch.Tensor, num_points: int) -> torch.Tensor:
    """Scene of every point, ``(P,)`` long, from ``offset (B + 1,)``; no
    host synchronisation (``num_points`` is known on the host)."""
    counts = offset[1:] - offset[:-1]
    return torch.repeat_interleave(
        torch.arange(counts.shape[0], device=offset.device), counts,
        output_size=num_points)


@MODELS.register_module()
class PointNetSceneBackbone(nn.Module):
    """PointNet's segmentation network: a per-point MLP on the features and
    the coordinates (centred on the scene's mean), max-pooled per scene into
    a global feature, which a second MLP reads with each point's feature.

    Args:
        in_channels: C of the point features.
        hidden_dims: widths of the per-point MLP (its last one is the
            point feature width).
        out_channels: width of the output features.
        global_dims: hidden widths of the second MLP.
    """

    def __init__(self, in_channels: int, hidden_dims: Sequence[int] = (64,
                                                                       128),
                 out_channels: int = 96, global_dims: Sequence[int] = (128, )):
        super().__init__()
        check_int('PointNetSceneBackbone', 'in_channels', in_channels)
        check_int_list('PointNetSceneBackbone', 'hidden_dims', hidden_dims)
        check_int('PointNetSceneBackbone', 'out_channels', out_channels)
        check_int_list('PointNetSceneBackbone', 'global_dims', global_dims,
                       allow_empty=True)
        self.in_channels = in_channels
        self.out_channels = out_channels
        mid = hidden_dims[-1]
        self.point_mlp = MLP(in_channels + 3, hidden_dims[:-1], mid,
                             last_norm_act=True)
        self.global_mlp = MLP(2 * mid, global_dims, out_channels)

    def forward(self, coord, feat, offset):
        batch = scene_index(offset, coord.shape[0])
        num_scenes = offset.shape[0] - 1
        centre = segment_mean(coord, batch, num_scenes)
        h = self.point_mlp(feat, coord - centre.index_select(0, batch))
        glob = segment_max(h, batch, num_scenes)
        return self.global_mlp(h, (glob, batch))
