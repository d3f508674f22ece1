"""Point loss: G2L and L2G readings of each point should agree."""
from dbbd.registry import MODELS
from dbbd.structures.sample_order import (batch_sample_order,
                                          point_sample_order)
from dbbd.utils.config_check import check_int, check_number
from torch import nn

from .info_nce import InfoNCELoss

# The sample order is built by the collate function; these names stay
# importable from here.
__all__ = ['PointLoss', 'point_sample_order', 'batch_sample_order']


@MODELS.register_module()
class PointLoss(nn.Module):
    """InfoNCE between G2L and L2G point embeddings on a random subsample.

    ``num_samples`` points are drawn (without replacement, uniformly over
    the batch's points) as the head of a permutation seeded from the
    scenes' ``sample_seed`` (:func:`point_sample_order`), never from the
    global RNG; all points when there are fewer. The head (when given) runs
    on the drawn rows only.

    Args:
        num_samples: points per batch (method 4096; small mode 512).
        temperature: InfoNCE temperature (0.1).

    ``forward(q (P, D), k (P, D), sample_order (P,), head=None,
    key_head=None) -> ()``: ``head`` maps both (``key_head``, when given,
    maps ``k``: an EMA teacher's head).
    """

    def __init__(self, num_samples: int = 4096, temperature: float = 0.1):
        super().__init__()
        check_int('PointLoss', 'num_samples', num_samples)
        check_number('PointLoss', 'temperature', temperature)
        self.num_samples = num_samples
        self.info_nce = InfoNCELoss(temperature)

    def sample(self, sample_order):
        """The first ``min(num_samples, P)`` entries of ``sample_order``.

        Args:
            sample_order (P,) long: a permutation of the points
                (:func:`point_sample_order`); a slice of it is a uniform
                draw without replacement.
        """
        return sample_order[:self.num_samples]

    def forward(self, q, k, sample_order, head=None, key_head=None):
        idx = self.sample(sample_order)
        q, k = q.index_select(0, idx), k.index_select(0, idx)
        if head is not None:
            q = head(q)
        key_head = key_head if key_head is not None else head
        if key_head is not None:
            k = key_head(k)
        return self.info_nce(q, k)
