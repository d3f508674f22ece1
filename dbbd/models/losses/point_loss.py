"""Point loss: G2L and L2G readings of each point should agree."""
import numpy as np
import torch
from dbbd.registry import MODELS
from dbbd.utils.config_check import check_int, check_number
from torch import nn

from .info_nce import InfoNCELoss

__all__ = ['PointLoss', 'sample_generator']


def sample_generator(sample_seed):
    """A CPU ``torch.Generator`` seeded from a batch's ``sample_seed (B,)``.

    The seed mixes every scene's seed (numpy's ``SeedSequence``), so the
    draw is a function of the batch content alone: reproducible, and the
    same after a resume, whatever the global RNG did.
    """
    entropy = [int(s) & 0xFFFFFFFFFFFFFFFF for s in sample_seed.tolist()]
    state = np.random.SeedSequence(entropy).generate_state(2, np.uint32)
    seed = (int(state[0]) << 32 | int(state[1])) & 0x7FFFFFFFFFFFFFFF
    return torch.Generator().manual_seed(seed)


@MODELS.register_module()
class PointLoss(nn.Module):
    """InfoNCE between G2L and L2G point embeddings on a random subsample.

    ``num_samples`` points are drawn (without replacement, uniformly over
    the batch's points) with a generator seeded from ``sample_seed``, never
    from the global RNG; all points when there are fewer. The head (when
    given) runs on the drawn rows only.

    Args:
        num_samples: points per batch (method 4096; small mode 512).
        temperature: InfoNCE temperature (0.1).

    ``forward(q (P, D), k (P, D), sample_seed (B,), head=None) -> ()``.
    """

    def __init__(self, num_samples: int = 4096, temperature: float = 0.1):
        super().__init__()
        check_int('PointLoss', 'num_samples', num_samples)
        check_number('PointLoss', 'temperature', temperature)
        self.num_samples = num_samples
        self.info_nce = InfoNCELoss(temperature)

    def sample(self, num_points, sample_seed):
        """Indices ``(min(num_samples, P),)`` long on ``sample_seed``'s
        device."""
        if num_points <= self.num_samples:
            return torch.arange(num_points, device=sample_seed.device)
        perm = torch.randperm(num_points,
                              generator=sample_generator(sample_seed))
        return perm[:self.num_samples].to(sample_seed.device)

    def forward(self, q, k, sample_seed, head=None):
        idx = self.sample(q.shape[0], sample_seed)
        q, k = q.index_select(0, idx), k.index_select(0, idx)
        if head is not None:
            q, k = head(q), head(k)
        return self.info_nce(q, k)
