"""Voxelisation of a batch: cells, averages, the way back to points."""
import numpy as np
import pytest
import torch

from dbbd.models.sparse import voxelize

VOXEL = 0.1


def _batch():
    """Two scenes with the same 60 random points plus a pair of points in
    one cell (scene 0) and a pair in neighbouring cells and one point lower
    than all others (scene 1, so its grid origin differs)."""
    gen = torch.Generator().manual_seed(0)
    base = torch.rand(60, 3, generator=gen, dtype=torch.float64) * 0.5 + 3.0
    pair_same = torch.tensor([[3.01, 3.02, 3.03], [3.09, 3.08, 3.07]],
                             dtype=torch.float64)
    pair_next = torch.tensor([[3.01, 3.02, 3.03], [3.11, 3.02, 3.03]],
                             dtype=torch.float64)
    low = torch.tensor([[2.55, 2.45, 2.35]], dtype=torch.float64)
    coord = torch.cat([base, pair_same, base, pair_next, low])
    feat = torch.randn(len(coord), 4, generator=gen, dtype=torch.float64)
    offset = torch.tensor([0, 62, 125])
    return coord, feat, offset


def test_every_point_gets_its_cells_mean():
    coord, feat, offset = _batch()
    voxels, p2v = voxelize(coord, feat, offset, VOXEL)
    # direct computation: group the points by (scene, cell) in Python
    cells = {}
    for b in range(2):
        lo, hi = int(offset[b]), int(offset[b + 1])
        grid = np.floor(coord[lo:hi].numpy() / VOXEL).astype(np.int64)
        grid -= grid.min(0)
        for i, g in enumerate(grid):
            cells.setdefault((b, *g.tolist()), []).append(lo + i)
    assert len(voxels.feat) == len(cells)
    for (b, x, y, z), members in cells.items():
        v = p2v[members]
        assert (v == v[0]).all()
        assert voxels.coords[v[0]].tolist() == [b, x, y, z]
        torch.testing.assert_close(voxels.feat[v[0]],
                                   feat[members].mean(0))
    # and back: each point carries its voxel's feature
    torch.testing.assert_close(voxels.feat[p2v][60],
                               feat[60:62].mean(0))


def test_shared_cells_scenes_and_origin():
    coord, feat, offset = _batch()
    voxels, p2v = voxelize(coord, feat, offset, VOXEL)
    # two points in one cell share a voxel; neighbouring cells do not
    assert p2v[60] == p2v[61]
    assert p2v[122] != p2v[123]
    # identical coordinates in two scenes never share a voxel
    assert not set(p2v[:62].tolist()) & set(p2v[62:].tolist())
    assert (voxels.coords[p2v[:62], 0] == 0).all()
    assert (voxels.coords[p2v[62:], 0] == 1).all()
    # per-scene grid starts at 0 on every axis
    for b in range(2):
        grid = voxels.coords[voxels.coords[:, 0] == b, 1:]
        assert grid.min(0).values.tolist() == [0, 0, 0]


def test_bad_input_one_line_errors():
    coord, feat, offset = _batch()
    with pytest.raises(ValueError, match='offset must be'):
        voxelize(coord, feat, torch.tensor([0, 62, 100]), VOXEL)
    with pytest.raises(ValueError, match='voxel_size must be > 0'):
        voxelize(coord, feat, offset, 0)
    with pytest.raises(ValueError, match='use a larger voxel_size'):
        voxelize(coord * 1e4, feat, offset, 1e-3)
