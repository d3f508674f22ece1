"""L2G aggregator: a parent region's feature from its children's."""
from typing import Optional

from dbbd.registry import MODELS
from dbbd.utils.config_check import check_int
from torch import nn

from ..utils import MLP, segment_max, segment_mean, segment_softmax, \
    segment_sum

__all__ = ['Aggregator']

_MODES = ('max', 'mean', 'attention')


@MODELS.register_module()
class Aggregator(nn.Module):
    """Pool the children of each parent: optional pre-MLP, spatial context,
    then max / mean / attention.

    Per child: ``h = pre_mlp(child_feat)`` (identity when ``pre_mlp`` is
    False); with ``spatial_context``, ``h = h + pos_mlp(offset)`` where
    ``offset`` is the child's centre minus its parent's centre, so where a
    child sits changes what it contributes. Then per parent: max or mean of
    ``h``, or with attention ``sum(w * h)`` where ``w`` is the softmax over
    the parent's children of a score ``score_mlp(h)`` (weights sum to 1 per
    parent).

    Args:
        channels: D, width of child and parent features (DBBD fills it in
            with the encoder's output width when left out).
        mode: 'max', 'mean' or 'attention'.
        spatial_context: add the MLP of the centre offsets.
        pre_mlp: apply ``Linear -> LayerNorm -> GELU -> Linear`` to each
            child first.
        hidden_channels: hidden width of the small MLPs (default D).
        coord_channels: 3.
    """

    def __init__(self, channels: int, mode: str = 'max',
                 spatial_context: bool = True, pre_mlp: bool = False,
                 hidden_channels: Optional[int] = None,
                 coord_channels: int = 3):
        super().__init__()
        if mode not in _MODES:
            raise ValueError(f'mode must be one of {_MODES}, got {mode!r}')
        check_int('Aggregator', 'channels', channels)
        if hidden_channels is not None:
            check_int('Aggregator', 'hidden_channels', hidden_channels)
        hidden = hidden_channels or channels
        self.channels = channels
        self.mode = mode
        self.pre_mlp = MLP(channels, [hidden], channels) if pre_mlp else None
        self.pos_mlp = MLP(coord_channels, [hidden],
                           channels) if spatial_context else None
        # no bias on the score: softmax ignores a constant shift, so that
        # bias could never learn
        self.score_mlp = MLP(channels, [hidden], 1, last_bias=False) \
            if mode == 'attention' else None

    def forward(self, child_feat, offset, parent, num_parents,
                return_weights=False):
        """Aggregate one level of children into their parents.

        Args:
            child_feat (C, D): features of the children (all regions of a
                level, all scenes).
            offset (C, 3): child centre minus parent centre.
            parent (C,) long: parent of each child, in ``[0, R)``.
            num_parents: R. Parents without children get 0.
            return_weights: also return the attention weights.

        Returns:
            (R, D), and with ``return_weights`` the weights ``(C,)`` (None
            unless ``mode == 'attention'``).
        """
        h = child_feat if self.pre_mlp is None else self.pre_mlp(child_feat)
        if self.pos_mlp is not None:
            h = h + self.pos_mlp(offset)
        weights = None
        if self.mode == 'max':
            out = segment_max(h, parent, num_parents)
        elif self.mode == 'mean':
            out = segment_mean(h, parent, num_parents)
        else:
            weights = segment_softmax(
                self.score_mlp(h).squeeze(1), parent, num_parents)
            out = segment_sum(h * weights.unsqueeze(1), parent, num_parents)
        return (out, weights) if return_weights else out
