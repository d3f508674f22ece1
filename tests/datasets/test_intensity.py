"""Intensity as a point feature: prepared scans -> dataset -> transforms ->
packed features, and the configs that ask for it."""
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config

from dbbd.datasets import DBBDDataset, SegDataset
from dbbd.datasets.formatting import (FEATURE_CHANNELS, PackDBBDInputs,
                                      check_feat_width, feature_channels,
                                      set_feat_keys)
from dbbd.datasets.ply import write_ply
from dbbd.datasets.prepare import prepare_dataset
from dbbd.datasets.scene_io import load_scene
from dbbd.datasets.transforms import intensity_full_scale
from dbbd.datasets.voxel import voxel_grid
from dbbd.registry import TRANSFORMS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASE = osp.join(REPO, 'configs', '_base_', 'datasets')
FEATS = ('color', 'normal', 'intensity')


@pytest.fixture(scope='module')
def scans(tmp_path_factory):
    """Prepared scans of both field layouts (intensity 0..1 and 0..65535)
    and one PLY without intensity, in split ``train``."""
    from scan_files import write_scan_ply
    tmp = tmp_path_factory.mktemp('scans')
    src = tmp / 'src'
    src.mkdir()
    write_scan_ply(src / 'rgbi.ply', 'rgbi', n=800, seed=1)
    write_scan_ply(src / 'wide.ply', 'normal', n=800, seed=2)
    plain = write_scan_ply(tmp / 'tmp.ply', 'rgbi', n=800, seed=3)
    write_ply(src / 'plain.ply', plain['coord'], color=plain['color'],
              label=plain['label'])
    root = tmp / 'data'
    s = prepare_dataset(src, root, workers=0, max_depth=2,
                        min_points_to_split=32, progress=False,
                        log=lambda m: None)
    assert s['failed'] == [] and s['fields']['intensity'] == 2
    return str(root)


def _stored(root, name):
    return np.asarray(load_scene(osp.join(root, 'train', name))['intensity'])


def _config_pipeline(name, feat_keys, split='train'):
    """A shipped base config's pipeline (its real view transforms) with
    ``feat_keys`` set the way ``--cfg-options feat_keys=`` sets it."""
    cfg = Config.fromfile(osp.join(BASE, name))
    cfg.model = dict(in_channels=3)
    set_feat_keys(cfg, feat_keys)
    return cfg, cfg[f'{split}_dataloader'].dataset.pipeline


def _ds(root, pipeline, cls=DBBDDataset, **kw):
    return cls(data_root=root, split='train', pipeline=pipeline, **kw)


# ------------------------------------------------------------ the features

def test_channels_of_intensity():
    assert FEATURE_CHANNELS['intensity'] == 1
    assert feature_channels(FEATS) == 7
    assert feature_channels(('intensity', )) == 1
    assert PackDBBDInputs(('normal', 'intensity')).in_channels == 4


@pytest.mark.parametrize('config', ['scannet.py', 'scannet_seg.py'])
def test_config_pipeline_packs_intensity_of_both_scales(scans, config):
    cfg, pipe = _config_pipeline(config, FEATS)
    # the top-level feat_keys set the model's width from the same rule
    assert cfg.model.in_channels == 7
    check_feat_width(cfg)
    ds = _ds(scans, pipe)
    for name, scale in (('rgbi', 1.0), ('wide', 65535.0)):
        stored = _stored(scans, name)
        assert intensity_full_scale(stored) == scale
        s = ds[ds.index_of(name)]
        feat = s['view1']['feat']
        assert feat.shape == (stored.shape[0], 7) and feat.dtype == np.float32
        # colour 0..2, normal 3..5, intensity 6: the sensor's full scale
        # maps to -1..1 whatever the sensor
        np.testing.assert_allclose(feat[:, 6], 2 * stored / scale - 1,
                                   atol=1e-6)
        assert feat[:, 6].min() >= -1 and feat[:, 6].max() <= 1
        assert feat[:, 6].std() > 0.3  # spread over the range, not crushed
        # normals (rotated with the view) stay unit vectors
        np.testing.assert_allclose(np.linalg.norm(feat[:, 3:6], axis=1), 1,
                                   atol=1e-5)


def test_intensity_follows_grid_sampling(scans):
    pipe = [dict(type='GridSample', grid_size=1.5, mode='test'),
            dict(type='MultiView', num_views=1, transforms=[
                dict(type='CenterShift'), dict(type='NormalizeIntensity')]),
            dict(type='PackDBBDInputs', feat_keys=('intensity', 'coord'))]
    ds = _ds(scans, pipe)
    scene = load_scene(osp.join(scans, 'train', 'wide'))
    keep, inverse = voxel_grid(scene['coord'], 1.5)
    assert 0 < keep.size < scene['coord'].shape[0] / 2  # points dropped
    s = ds[ds.index_of('wide')]
    feat = s['view1']['feat']
    assert feat.shape == (keep.size, 4)
    stored = np.asarray(scene['intensity'])
    np.testing.assert_allclose(feat[:, 0], 2 * stored[keep] / 65535.0 - 1,
                               atol=1e-6)
    # the kept points' intensity, not the first keep.size of the scene
    assert not np.allclose(feat[:, 0], 2 * stored[:keep.size] / 65535 - 1)
    assert np.array_equal(s['inverse'], inverse)


def test_scene_without_intensity_is_one_line_naming_it(scans):
    cfg, pipe = _config_pipeline('scannet_seg.py', ('normal', 'intensity'))
    ds = _ds(scans, pipe, cls=SegDataset, num_classes=15)
    assert ds[ds.index_of('rgbi')]['view1']['feat'].shape[1] == 4
    with pytest.raises(ValueError) as e:
        ds[ds.index_of('plain')]
    msg = str(e.value)
    assert '\n' not in msg
    assert osp.join(scans, 'train', 'plain') in msg
    assert "asks for 'intensity' but the scene has no intensity" in msg
    assert "drop 'intensity' from feat_keys" in msg
    assert 'tools/create_data.py' in msg


# ----------------------------------------------------------- normalisation

@pytest.mark.parametrize('top,scale', [(0.0, 1.0), (0.4, 1.0), (1.0, 1.0),
                                       (1.5, 255.0), (255.0, 255.0),
                                       (256.0, 65535.0), (65535.0, 65535.0)])
def test_full_scale_rule(top, scale):
    a = np.linspace(0, top, 101, dtype=np.float32)
    assert intensity_full_scale(a) == scale


def test_normalize_intensity_values():
    t = TRANSFORMS.build(dict(type='NormalizeIntensity'))
    out = t(dict(intensity=np.array([0, 127.5, 255], np.float32)))
    np.testing.assert_allclose(out['intensity'], [-1, 0, 1], atol=1e-6)
    assert out['intensity'].dtype == np.float32
    # all zero (a field written but never measured) stays constant at -1
    assert t(dict(intensity=np.zeros(5, np.float32)))['intensity'].tolist() \
        == [-1.0] * 5
    # beyond 16 bit: the scene's 99th percentile is full scale, clipped
    wide = np.arange(1, 201, dtype=np.float32) * 1e5
    out = t(dict(intensity=wide))['intensity']
    assert out.max() == 1 and out.min() > -1
    assert np.sum(out == 1) == 2
    assert t(dict(intensity=None))['intensity'] is None
    fixed = TRANSFORMS.build(dict(type='NormalizeIntensity', scale=4095))
    np.testing.assert_allclose(
        fixed(dict(intensity=np.array([0, 4095, 9000], np.float32)))
        ['intensity'], [-1, 1, 1])
    with pytest.raises(ValueError, match='NormalizeIntensity: scale'):
        TRANSFORMS.build(dict(type='NormalizeIntensity', scale=0))


# ------------------------------------------------------------------ configs

def test_intensity_without_its_normalisation_is_refused():
    cfg, pipe = _config_pipeline('scannet.py', FEATS)
    check_feat_width(cfg)
    for view in (cfg.train_dataloader.dataset.pipeline[0].transforms, ):
        view[:] = [t for t in view if t['type'] != 'NormalizeIntensity']
    with pytest.raises(ValueError) as e:
        check_feat_width(cfg)
    msg = str(e.value)
    assert msg.startswith('train_dataloader: ') and '\n' not in msg
    assert "dict(type='NormalizeIntensity')" in msg
    # without 'intensity' in feat_keys the transform is not needed
    cfg, _ = _config_pipeline('scannet.py', ('normal', 'color'))
    for view in (cfg.train_dataloader.dataset.pipeline[0].transforms, ):
        view[:] = [t for t in view if t['type'] != 'NormalizeIntensity']
    check_feat_width(cfg)


def test_train_command_line_sets_intensity_width():
    from tools.train import build_config, parse_args
    small = osp.join(REPO, 'configs', 'dbbd', 'dbbd_small_scannet.py')
    cfg = build_config(parse_args(
        [small, '--cfg-options', "feat_keys=('color','normal','intensity')"]))
    assert cfg.model.backbone.in_channels == 7
    check_feat_width(cfg)
    cfg = build_config(parse_args(
        [small, '--cfg-options', 'feat_keys=intensity']))
    assert cfg.model.backbone.in_channels == 1
