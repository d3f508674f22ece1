"""Segmentation heads: point features -> class logits."""
from typing import Optional

from torch import nn

from dbbd.registry import MODELS
from ..utils import MLP

__all__ = ['LinearSegHead', 'MLPSegHead']


@MODELS.register_module()
class LinearSegHead(nn.Module):
    """One ``Linear``: the linear probe's head.

    Args:
        in_channels: feature width D (:class:`PointSegmentor` fills in the
            backbone's ``out_channels`` when left out).
        num_classes: K (filled in from the segmentor's ``num_classes``).

    ``forward(x (P, D)) -> (P, K)`` logits.
    """

    def __init__(self, in_channels: int = 96, num_classes: int = 20):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.cls = nn.Linear(in_channels, num_classes)

    def forward(self, x):
        return self.cls(x)


@MODELS.register_module()
class MLPSegHead(nn.Module):
    """``Linear -> LayerNorm -> ReLU -> Linear``: one hidden layer.

    Args:
        in_channels, num_classes: as :class:`LinearSegHead`.
        hidden_channels: hidden width (default ``in_channels``).

    ``forward(x (P, D)) -> (P, K)`` logits.
    """

    def __init__(self, in_channels: int = 96, num_classes: int = 20,
                 hidden_channels: Optional[int] = None):
        super().__init__()
        self.in_channels, self.num_classes = in_channels, num_classes
        self.mlp = MLP(in_channels, [hidden_channels or in_channels],
                       num_classes, act='relu')

    def forward(self, x):
        return self.mlp(x)
