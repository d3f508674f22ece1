"""InfoNCE: contrast each query with every key, its own key positive."""
import torch
import torch.nn.functional as F
from dbbd.registry import MODELS
from dbbd.utils.config_check import check_number
from torch import nn

__all__ = ['InfoNCELoss']


@MODELS.register_module()
class InfoNCELoss(nn.Module):
    """Cross-entropy of ``q @ k.T / temperature`` with targets on the diagonal.

    Args:
        temperature: t (method default 0.1).

    ``forward(q (N, E), k (N, E)) -> ()``: row ``i`` of ``q`` and row ``i`` of
    ``k`` are the two readings of one thing (positive pair); the other
    ``N - 1`` keys are its negatives. Mean over the ``N`` rows. Embeddings
    are expected L2-normalised (the projection heads do it). ``N = 1`` gives
    exactly 0.
    """

    def __init__(self, temperature: float = 0.1):
        super().__init__()
        check_number('InfoNCELoss', 'temperature', temperature)
        self.temperature = temperature

    def forward(self, q, k):
        if q.shape != k.shape or q.dim() != 2:
            raise ValueError(f'q and k must both be (N, E), got '
                             f'{tuple(q.shape)} and {tuple(k.shape)}')
        # scale the (N, E) queries, not the (N, N) logits: same numbers,
        # N / E times fewer divisions (N is thousands of regions)
        logits = (q / self.temperature) @ k.t()
        target = torch.arange(q.shape[0], device=q.device)
        return F.cross_entropy(logits, target)
