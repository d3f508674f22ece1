"""Small synthetic batches and a small DBBD config for the model tests."""
import numpy as np

from dbbd.datasets import build_region_tree, dbbd_collate


def make_scene(n=600, max_depth=2, branching=4, min_points_to_split=16,
               seed=0, scene_id=None, in_channels=3):
    """One scene as ``dbbd_collate`` expects it; two views of one tree."""
    rng = np.random.default_rng(seed)
    coord = (rng.random((n, 3)) * [4.0, 3.0, 2.0]).astype(np.float32)
    tree, order = build_region_tree(coord, branching=branching,
                                    max_depth=max_depth,
                                    min_points_to_split=min_points_to_split,
                                    seed=seed)
    coord = coord[order]
    feat = rng.normal(size=(n, in_channels)).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle), 0],
                    [np.sin(angle), np.cos(angle), 0], [0, 0, 1]],
                   np.float32)
    coord2 = coord @ rot.T * 1.1 + rng.normal(0, 0.01, (n, 3))
    return dict(
        scene_id=scene_id or f'scene{seed}', num_points=n,
        point_region=tree.point_region, region_parent=tree.region_parent,
        region_center=tree.region_center, level_offset=tree.level_offset,
        segment=rng.integers(-1, 20, n), sample_seed=seed,
        view1=dict(coord=coord, feat=feat),
        view2=dict(coord=coord2.astype(np.float32),
                   feat=(feat + rng.normal(0, 0.1, feat.shape)).astype(
                       np.float32)))


def make_batch(*scenes, **kwargs):
    """``make_batch(dict(n=.., max_depth=..), ...)`` -> collated batch."""
    scenes = scenes or (dict(), )
    return dbbd_collate([
        make_scene(**{'seed': i, **kwargs, **s}) for i, s in enumerate(scenes)
    ])


def small_cfg(width=16, aggregator=None, encoder=None, num_samples=64,
              **kwargs):
    """A DBBD config with tiny widths (every dim set explicitly)."""
    backbone = dict(
        type='DBBDTreeBackbone', in_channels=3, hidden_channels=width,
        encoder=encoder or dict(type='PointNetEncoder',
                                hidden_dims=[8, width], out_channels=width),
        propagator=dict(type='MLPPropagator', hidden_channels=width,
                        out_channels=width),
        aggregator=aggregator or dict(type='Aggregator', mode='max'))
    for key in ('in_channels', 'hidden_channels', 'with_cp'):
        if key in kwargs:
            backbone[key] = kwargs.pop(key)
    cfg = dict(
        type='DBBD', backbone=backbone,
        region_head=dict(type='ProjectionHead', out_channels=width),
        point_head=dict(type='ProjectionHead', out_channels=width),
        loss=dict(type='DBBDLoss', alpha=1.0, beta=0.5,
                  point_loss=dict(type='PointLoss', num_samples=num_samples)))
    cfg.update(kwargs)
    return cfg
