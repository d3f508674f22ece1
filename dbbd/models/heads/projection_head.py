"""Projection head: features into the contrastive space."""
from typing import Optional

import torch.nn.functional as F
from dbbd.registry import MODELS
from torch import nn

from ..utils import MLP

__all__ = ['ProjectionHead']


@MODELS.register_module()
class ProjectionHead(nn.Module):
    """``Linear -> LayerNorm -> ReLU -> Linear``, output L2-normalised.

    LayerNorm instead of BatchNorm so a batch of one region or one scene
    works.

    Args:
        in_channels: input width (DBBD fills in the encoder's output width
            when left out; method 96).
        hidden_channels: hidden width (default ``out_channels``).
        out_channels: embedding width (method 128; small mode 64).

    ``forward(x (N, in_channels)) -> (N, out_channels)`` of unit norm.
    """

    def __init__(self, in_channels: int = 96,
                 hidden_channels: Optional[int] = None,
                 out_channels: int = 128):
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.mlp = MLP(in_channels, [hidden_channels or out_channels],
                       out_channels, act='relu')

    def forward(self, x):
        return F.normalize(self.mlp(x), dim=-1)
