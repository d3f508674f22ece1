import numpy as np
import torch

from dbbd.datasets import build_region_tree, dbbd_collate


def _sample(n, max_depth, seed, scene_id):
    rng = np.random.default_rng(seed)
    coord = (rng.random((n, 3)) * [4, 3, 2]).astype(np.float32)
    tree, order = build_region_tree(coord, branching=4, max_depth=max_depth,
                                    min_points_to_split=16, seed=seed)
    coord = coord[order]
    return dict(
        scene_id=scene_id, num_points=n,
        point_region=tree.point_region, region_parent=tree.region_parent,
        region_center=tree.region_center, level_offset=tree.level_offset,
        segment=rng.integers(-1, 20, n), sample_seed=seed,
        view1=dict(coord=coord, feat=np.ones((n, 3), np.float32)),
        view2=dict(coord=coord + 1, feat=np.zeros((n, 3), np.float32)))


def test_collate_offsets_and_global_region_ids():
    samples = [_sample(300, 2, 0, 'a'), _sample(200, 1, 1, 'b'),
               _sample(250, 3, 2, 'c')]
    batch = dbbd_collate(samples)
    inp = batch['inputs']
    assert inp['offset'].tolist() == [0, 300, 500, 750]
    L = 4  # deepest scene: levels 0..3
    assert inp['point_region'].shape == (L, 750)
    assert inp['region_offset'].shape == (L, 4)
    assert len(inp['region_parent']) == L == len(inp['region_center'])
    assert inp['view1']['coord'].shape == (750, 3)
    assert inp['view2']['feat'].dtype == torch.float32
    assert [d['scene_id'] for d in batch['data_samples']] == ['a', 'b', 'c']
    ro = inp['region_offset']
    for l in range(L):
        pr = inp['point_region'][l]
        r_l = int(ro[l, -1])
        assert inp['region_parent'][l].shape == (r_l,)
        for b, s in enumerate(samples):
            pts = pr[inp['offset'][b]:inp['offset'][b + 1]]
            if l >= s['point_region'].shape[0]:
                assert (pts == -1).all()
                assert ro[l, b] == ro[l, b + 1]
                continue
            local = torch.from_numpy(s['point_region'][l].astype(np.int64))
            expect = torch.where(local >= 0, local + ro[l, b], -1)
            assert torch.equal(pts, expect)
            # centres are global point indices inside the scene's range
            cen = inp['region_center'][l][ro[l, b]:ro[l, b + 1]]
            assert ((cen >= inp['offset'][b]) &
                    (cen < inp['offset'][b + 1])).all()
            # each region's centre point belongs to that region
            assert torch.equal(pr[cen], torch.arange(ro[l, b], ro[l, b + 1]))
        if l:
            # a point's parent region at level l is its region at level l-1
            has = pr >= 0
            par = inp['region_parent'][l][pr[has]]
            assert torch.equal(par, inp['point_region'][l - 1][has])
        else:
            assert (inp['region_parent'][0] == -1).all()
    assert inp['sample_seed'].tolist() == [0, 1, 2]


def test_collate_single_scene_single_region():
    s = _sample(10, 0, 3, 'tiny')
    inp = dbbd_collate([s])['inputs']
    assert inp['point_region'].shape == (1, 10)
    assert inp['region_offset'].tolist() == [[0, 1]]
    assert 'view2' in inp
