"""Seeded generators keyed by scene: the same draw for a scene whatever the
batch it is in, the loader order or the number of workers."""
import zlib

import numpy as np

__all__ = ['scene_rng']


def scene_rng(seed: int, scene_id: str) -> np.random.Generator:
    """A generator seeded by ``(seed, crc32(scene_id))``."""
    return np.random.default_rng([int(seed), zlib.crc32(scene_id.encode())])
