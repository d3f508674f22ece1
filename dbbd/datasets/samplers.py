"""A sampler that tells the dataset which epoch and seed a sample is for."""
from mmengine.dataset import DefaultSampler

from dbbd.registry import DATA_SAMPLERS

__all__ = ['EpochSeedSampler']


@DATA_SAMPLERS.register_module()
class EpochSeedSampler(DefaultSampler):
    """mmengine's ``DefaultSampler`` that yields ``(index, epoch, seed)``.

    The sampler lives in the main process and is told the epoch by the
    train loop, so the triple reaches the dataset correctly with any number
    of (persistent or not) loader workers. :class:`DBBDDataset` derives all
    augmentation randomness from it, which makes a resumed run see exactly
    the augmentations of an uninterrupted one. Shuffle order and rank
    splitting are those of ``DefaultSampler`` (seeded by ``seed + epoch``).
    """

    def __iter__(self):
        epoch, seed = self.epoch, self.seed
        for index in super().__iter__():
            yield (int(index), epoch, seed)
