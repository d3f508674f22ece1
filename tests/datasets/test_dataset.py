import os
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from dbbd.datasets import (DataPreparationError, DBBDDataset,
                           EpochSeedSampler, dbbd_collate)

VIEW = [
    dict(type='CenterShift'),
    dict(type='RandomRotateZ'),
    dict(type='RandomScale'),
    dict(type='RandomJitter'),
]


def pipeline(num_views=2, view=VIEW, feat_keys=('normal', )):
    return [dict(type='MultiView', num_views=num_views, transforms=view),
            dict(type='PackDBBDInputs', feat_keys=feat_keys)]


def _ds(root, **kw):
    kw.setdefault('pipeline', pipeline())
    return DBBDDataset(data_root=root, **kw)


def test_loads_prepared_scenes(demo_root):
    ds = _ds(demo_root)
    assert len(ds) == 4
    s = ds[0]
    n = s['num_points']
    assert s['view1']['coord'].shape == (n, 3)
    assert s['view1']['feat'].shape == (n, 3)  # normals by default
    assert s['point_region'].shape[1] == n
    assert s['segment'].shape == (n, )
    assert s['segment'].max() < 20 and s['segment'].min() >= -1


def test_max_scenes_and_warning(demo_root):
    assert len(_ds(demo_root, max_scenes=2)) == 2
    assert len(_ds(demo_root, split='val')) == 2
    with pytest.warns(UserWarning, match='max_scenes=10 is larger'):
        ds = _ds(demo_root, max_scenes=10)
    assert len(ds) == 4


def test_max_depth_truncates_trees(demo_root):
    full = _ds(demo_root)[0]
    cut = _ds(demo_root, max_depth=1)[0]
    assert full['point_region'].shape[0] == 4
    assert cut['point_region'].shape[0] == 2
    np.testing.assert_array_equal(cut['point_region'],
                                  full['point_region'][:2])
    assert len(cut['region_parent']) == cut['level_offset'][-1]


def test_dual_views_differ_and_share_the_tree(demo_root):
    s = _ds(demo_root)[1]
    assert not np.allclose(s['view1']['coord'], s['view2']['coord'])
    # one tree for both views: the same points in the same regions, and the
    # views are the same points (rigid-ish transforms keep distances close)
    d1 = np.linalg.norm(s['view1']['coord'] - s['view1']['coord'][0], axis=1)
    d2 = np.linalg.norm(s['view2']['coord'] - s['view2']['coord'][0], axis=1)
    assert np.corrcoef(d1, d2)[0, 1] > 0.95
    single = _ds(demo_root, pipeline=pipeline(num_views=1))[1]
    assert 'view2' not in single
    np.testing.assert_array_equal(single['view1']['coord'],
                                  s['view1']['coord'])


def test_features_colour_and_both(demo_root):
    s = _ds(demo_root, pipeline=pipeline(
        view=VIEW + [dict(type='NormalizeColor')],
        feat_keys=('normal', 'color')))[0]
    assert s['view1']['feat'].shape[1] == 6
    assert np.abs(s['view1']['feat'][:, 3:]).max() <= 1.0
    with pytest.raises(ValueError, match="feat_keys.*'rgb'"):
        _ds(demo_root, pipeline=pipeline(feat_keys=('rgb', )))
    with pytest.raises(ValueError, match='must end with a packing'):
        _ds(demo_root, pipeline=VIEW)


def test_augmentation_is_a_function_of_seed_epoch_index(demo_root):
    ds = _ds(demo_root)
    a, b = ds[(2, 3, 7)], ds[(2, 3, 7)]
    np.testing.assert_array_equal(a['view1']['coord'], b['view1']['coord'])
    assert a['sample_seed'] == b['sample_seed']
    c = ds[(2, 4, 7)]  # next epoch: new augmentation
    assert not np.allclose(a['view1']['coord'], c['view1']['coord'])
    assert a['sample_seed'] != c['sample_seed']


@pytest.mark.parametrize('workers', [0, 2])
def test_loader_batches_reproducible_with_workers(demo_root, workers):
    """The same (seed, epoch) gives the same batches with 0 or 2 workers,
    and equals what the dataset returns directly."""
    ds = _ds(demo_root)

    def epoch_batches(epoch):
        sampler = EpochSeedSampler(ds, shuffle=True, seed=11)
        sampler.set_epoch(epoch)
        loader = DataLoader(ds, batch_size=2, sampler=sampler,
                            num_workers=workers, collate_fn=dbbd_collate)
        return list(loader)

    e1 = epoch_batches(1)
    sampler = EpochSeedSampler(ds, shuffle=True, seed=11)
    sampler.set_epoch(1)
    order = list(sampler)
    direct = dbbd_collate([ds[i] for i in order[:2]])
    assert torch.equal(e1[0]['inputs']['view1']['coord'],
                       direct['inputs']['view1']['coord'])
    assert torch.equal(e1[0]['inputs']['sample_seed'],
                       direct['inputs']['sample_seed'])
    e2 = epoch_batches(2)
    assert not torch.equal(e1[0]['inputs']['view1']['coord'],
                           e2[0]['inputs']['view1']['coord'])


def test_missing_and_empty_split_name_the_folder(tmp_path, demo_root):
    with pytest.raises(DataPreparationError,
                       match=r'nowhere.*train does not exist.*create_data'):
        _ds(str(tmp_path / 'nowhere'))
    (tmp_path / 'empty' / 'train').mkdir(parents=True)
    with pytest.raises(DataPreparationError, match='holds no prepared scene'):
        _ds(str(tmp_path / 'empty'))


def test_bad_scene_file_is_named(tmp_path, demo_root):
    root = tmp_path / 'copy'
    shutil.copytree(demo_root, root)
    scene = sorted(os.listdir(root / 'train'))[0]
    coord = root / 'train' / scene / 'coord.npy'
    coord.write_bytes(coord.read_bytes()[:100])  # truncated
    ds = _ds(str(root))
    with pytest.raises(ValueError, match='coord.npy'):
        ds[0]
