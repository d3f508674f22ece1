"""The seeded order in which a batch's points are sampled.

The collate function builds it on the host (in the loader workers) as
``inputs['sample_order']``; the losses that subsample points take a slice
of it on the device, with no host synchronisation.
"""
import numpy as np
import torch

__all__ = ['point_sample_order', 'batch_sample_order']


def point_sample_order(sample_seed, num_points: int) -> np.ndarray:
    """A seeded permutation of a batch's ``num_points`` points: ``(P,)``.

    The seed mixes every scene's ``sample_seed`` (numpy's
    ``SeedSequence``), so the draw is a function of the batch content
    alone: reproducible, and the same after a resume, whatever the global
    RNG did. The collate function calls it on the host (in the loader
    workers) and ships it as ``inputs['sample_order']``; the point loss
    takes its first ``num_samples`` entries, a slice, with no host
    synchronisation.
    """
    entropy = [int(s) & 0xFFFFFFFFFFFFFFFF for s in np.asarray(
        sample_seed.tolist() if torch.is_tensor(sample_seed) else
        sample_seed).ravel()]
    return np.random.default_rng(np.random.SeedSequence(entropy)).permutation(
        num_points)


def batch_sample_order(inputs: dict) -> torch.Tensor:
    """The batch's ``sample_order`` (built by the collate function), or for
    a batch assembled by hand, :func:`point_sample_order` of its seeds."""
    order = inputs.get('sample_order')
    if order is None:
        order = torch.from_numpy(point_sample_order(
            inputs['sample_seed'], int(inputs['offset'][-1]))).to(
                inputs['offset'].device)
    return order
