"""Region tree invariants (dbbd.datasets.region_tree)."""
import numpy as np
import pytest

from dbbd.datasets.region_tree import (RegionTree, build_region_tree,
                                       check_tree, truncate_tree)


def _cloud(n=3000, seed=0):
    return np.random.default_rng(seed).random((n, 3)) * [6, 4, 3]


def _clustered(seed=0):
    """A dense cluster and sparse outliers: leaves at several depths."""
    rng = np.random.default_rng(seed)
    dense = rng.normal(0, 0.05, (3000, 3))
    sparse = rng.random((150, 3)) * 10 + 5
    return np.concatenate([dense, sparse])


@pytest.fixture(scope='module')
def built():
    coord = _cloud()
    tree, order = build_region_tree(coord, branching=8, max_depth=3,
                                    min_points_to_split=64, seed=0)
    return coord, tree, order


def test_order_is_a_permutation(built):
    coord, tree, order = built
    assert np.array_equal(np.sort(order), np.arange(len(coord)))
    check_tree(tree, len(coord))


def test_each_level_partitions_its_parent(built):
    _, tree, _ = built
    pr = tree.point_region
    for l in range(1, tree.num_levels):
        ids = pr[l]
        has = ids >= 0
        par, _ = tree.level(l)
        # a point's region at l has the point's region at l-1 as parent
        assert np.array_equal(par[ids[has]], pr[l - 1][has])
        # every region of the level holds points (empty children dropped)
        counts = np.bincount(ids[has], minlength=len(par))
        assert counts.min() > 0 and len(counts) == len(par)
        # a point without a region at l has none below either (it is a leaf)
        if l + 1 < tree.num_levels:
            assert np.all(pr[l + 1][~has] == -1)
        # children of a parent hold exactly the parent's points: the points
        # of split parents all continue
        split = np.zeros(tree.regions_per_level[l - 1], bool)
        split[par] = True
        assert np.array_equal(has, (pr[l - 1] >= 0) & split[
            np.maximum(pr[l - 1], 0)])


def test_depth_and_branching_bounds(built):
    _, tree, _ = built
    assert tree.num_levels <= 4
    assert tree.regions_per_level[0] == 1
    for l in range(1, tree.num_levels):
        par, _ = tree.level(l)
        assert np.bincount(par).max() <= 8
    # a region of >= min_points_to_split points above the last level splits
    pr = tree.point_region
    for l in range(tree.num_levels - 1):
        size = np.bincount(pr[l][pr[l] >= 0])
        par, _ = tree.level(l + 1)
        nchild = np.bincount(par, minlength=len(size))
        assert np.all(nchild[size >= 64] >= 2)
        assert np.all(nchild[size < 64] == 0)


def test_regions_contiguous_and_centres_inside(built):
    _, tree, _ = built
    pr = tree.point_region
    idx = np.arange(pr.shape[1])
    for l in range(tree.num_levels):
        ids = pr[l]
        has = ids >= 0
        r = tree.regions_per_level[l]
        lo = np.full(r, pr.shape[1])
        hi = np.full(r, -1)
        np.minimum.at(lo, ids[has], idx[has])
        np.maximum.at(hi, ids[has], idx[has])
        assert np.array_equal(hi - lo + 1, np.bincount(ids[has], minlength=r))
        _, cen = tree.level(l)
        assert np.array_equal(ids[cen], np.arange(r))


def test_root_centre_is_nearest_centroid(built):
    coord, tree, order = built
    xyz = coord[order]
    c = tree.region_center[0]
    d = ((xyz - xyz.mean(0)) ** 2).sum(1)
    assert d[c] == d.min()


def test_deterministic_by_seed():
    coord = _cloud(2000, 1)
    a, oa = build_region_tree(coord, max_depth=2, seed=3)
    b, ob = build_region_tree(coord, max_depth=2, seed=3)
    c, _ = build_region_tree(coord, max_depth=2, seed=4)
    assert np.array_equal(oa, ob)
    for k in ('point_region', 'region_parent', 'region_center',
              'level_offset'):
        assert np.array_equal(getattr(a, k), getattr(b, k))
    assert not np.array_equal(a.point_region, c.point_region)


def test_mixed_leaf_depths():
    tree, _ = build_region_tree(_clustered(), branching=8, max_depth=4,
                                min_points_to_split=64, seed=0)
    pr = tree.point_region
    leaf_level = (pr >= 0).sum(0) - 1
    assert len(np.unique(leaf_level)) >= 2
    assert leaf_level.max() == 4 and leaf_level.min() < 4
    check_tree(tree, pr.shape[1])


def test_truncate(built):
    coord, tree, _ = built
    t1 = truncate_tree(tree, 1)
    assert t1.num_levels == 2
    check_tree(t1, len(coord))
    assert np.array_equal(t1.point_region, tree.point_region[:2])
    assert np.array_equal(t1.region_parent,
                          tree.region_parent[:tree.level_offset[2]])
    assert truncate_tree(tree, 10) is tree
    assert truncate_tree(tree, None) is tree
    with pytest.raises(ValueError):
        truncate_tree(tree, -1)


def test_check_tree_catches_inconsistency(built):
    coord, tree, _ = built
    bad_parent = tree.region_parent.copy()
    a = tree.level_offset[2]
    bad_parent[a] = (bad_parent[a] + 1) % tree.regions_per_level[1]
    bad = RegionTree(tree.point_region, bad_parent, tree.region_center,
                     tree.level_offset)
    with pytest.raises(ValueError, match='refine'):
        check_tree(bad, len(coord))
    bad_ids = tree.point_region.copy()
    bad_ids[1, 0] = 999
    with pytest.raises(ValueError, match='out of range'):
        check_tree(RegionTree(bad_ids, tree.region_parent,
                              tree.region_center, tree.level_offset),
                   len(coord))


def test_bad_input():
    with pytest.raises(ValueError):
        build_region_tree(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        build_region_tree(np.zeros((10, 2)))
