"""Grid subsampling (dbbd.datasets.voxel)."""
import numpy as np
import pytest

from dbbd.datasets.voxel import voxel_subsample


def test_one_point_per_voxel_nearest_centre():
    coord = np.array([[0.01, 0.01, 0.01], [0.05, 0.05, 0.05],
                      [0.09, 0.02, 0.03], [0.15, 0.05, 0.05],
                      [0.12, 0.02, 0.01]])
    keep = voxel_subsample(coord, 0.1)
    # voxel [0,0.1): point 1 is at its centre; voxel [0.1,0.2): point 3
    assert keep.tolist() == [1, 3]


def test_random_cloud_properties():
    rng = np.random.default_rng(0)
    coord = rng.random((5000, 3)) * 2 + 1e5   # far from the origin
    keep = voxel_subsample(coord, 0.1)
    assert np.all(np.diff(keep) > 0)
    vox = np.floor((coord - coord.min(0)) / 0.1).astype(int)
    occupied = np.unique(vox, axis=0)
    assert len(keep) == len(occupied)
    assert len(np.unique(vox[keep], axis=0)) == len(keep)
    # deterministic and independent of the input order
    perm = rng.permutation(len(coord))
    again = perm[voxel_subsample(coord[perm], 0.1)]
    assert np.array_equal(np.sort(again), keep)
    labels = np.arange(len(coord)) % 20
    assert labels[keep].shape == keep.shape  # labels follow the indices


def test_bad_voxel_size():
    with pytest.raises(ValueError):
        voxel_subsample(np.zeros((3, 3)), 0)
    assert voxel_subsample(np.zeros((0, 3)), 0.1).size == 0
