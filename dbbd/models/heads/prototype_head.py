"""Prototype head of self-distillation: features -> scores against learned
prototypes."""
import torch
import torch.nn.functional as F
from torch import nn

from dbbd.registry import MODELS
from dbbd.utils.config_check import check_int

from ..utils import MLP

__all__ = ['PrototypeHead']


@MODELS.register_module()
class PrototypeHead(nn.Module):
    """DINO's head: an MLP to a bottleneck embedding, L2-normalised, then
    its cosine with each of K learned prototypes (unit-norm rows).

    ``MLP(in -> hidden -> hidden -> bottleneck)`` (LayerNorm and GELU
    between layers, see :class:`~dbbd.models.utils.MLP`); the prototypes
    are normalised in the forward pass (DINO's weight normalisation with
    the norm fixed to 1), so the scores lie in ``[-1, 1]`` and a
    temperature sets their sharpness.

    Args:
        in_channels: feature width (SelfDistill fills in the backbone's).
        hidden_channels: width of the two hidden layers.
        bottleneck_channels: width E of the embedding.
        num_prototypes: K (Sonata / DINO: 4096 and more).

    ``forward(x (N, in_channels)) -> (embedding (N, E) unit norm, scores
    (N, K))``.
    """

    def __init__(self, in_channels: int = 96, hidden_channels: int = 256,
                 bottleneck_channels: int = 128,
                 num_prototypes: int = 4096):
        super().__init__()
        for name, value in (('in_channels', in_channels),
                            ('hidden_channels', hidden_channels),
                            ('bottleneck_channels', bottleneck_channels),
                            ('num_prototypes', num_prototypes)):
            check_int('PrototypeHead', name, value)
        self.in_channels = in_channels
        self.out_channels = bottleneck_channels
        self.num_prototypes = num_prototypes
        self.mlp = MLP(in_channels, [hidden_channels, hidden_channels],
                       bottleneck_channels, act='gelu')
        self.prototypes = nn.Parameter(
            torch.empty(num_prototypes, bottleneck_channels))
        nn.init.trunc_normal_(self.prototypes, std=0.02)

    def forward(self, x):
        z = F.normalize(self.mlp(x), dim=-1)
        return z, z @ F.normalize(self.prototypes, dim=-1).t()
