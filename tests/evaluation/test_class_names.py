"""Class names of the metrics: from the config, else the dataset, else
numbered; never ScanNet-20's for a dataset of other classes."""
import os.path as osp

import pytest
import torch
import torch.nn.functional as F
from mmengine.config import Config

from dbbd.datasets.readers import SCANNET20_CLASSES
from dbbd.evaluation import SegMetric
from dbbd.evaluation.metrics.linear_probe import LinearProbeMetric
from dbbd.evaluation.metrics.seg_metric import resolve_class_names
from dbbd.models.segmentors.config import apply_top_level

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PRETRAIN = osp.join(REPO, 'configs', 'dbbd', 'dbbd_small_scannet.py')
SEG = osp.join(REPO, 'configs', 'dbbd', 'seg_pointnet_small_scannet_ft.py')
NUMBERED15 = tuple(f'class{i}' for i in range(15))


def _probe_keys(metric, k=15):
    """Run ``metric`` on two scenes holding every class 0..k-1; return the
    per-class metric keys and the class names of its log table."""
    scenes = []
    for i in range(2):
        seg = torch.arange(k).repeat(20)
        feat = F.one_hot(seg, k).float()
        scenes.append((f's{i}', feat, seg))
    offset = torch.tensor([0, 20 * k, 40 * k])
    raw = torch.cat([f for _, f, _ in scenes])
    batch = dict(inputs=dict(offset=offset, view1=dict(feat=raw)),
                 data_samples=[{}, {}])
    metric.process(batch, [dict(scene_id=sid, point_feat=f, segment=seg)
                           for sid, f, seg in scenes])
    return sorted(key for key in metric.evaluate(2) if '/iou/' in key)


def test_rule_config_then_dataset_then_numbered():
    assert resolve_class_names(3, ('a', 'b', 'c'), dict(classes=('x', ) * 3)) \
        == ('a', 'b', 'c')
    assert resolve_class_names(3, None, dict(classes=('x', 'y', 'z'))) == (
        'x', 'y', 'z')
    # the dataset's names of another count are not used
    assert resolve_class_names(15, None, dict(classes=SCANNET20_CLASSES)) \
        == NUMBERED15
    assert resolve_class_names(15) == NUMBERED15
    # 20 classes without names are numbered too: no ScanNet by default
    assert resolve_class_names(20) == tuple(f'class{i}' for i in range(20))


def test_15_class_probe_never_shows_scannet_names(caplog):
    keys = _probe_keys(LinearProbeMetric(num_classes=15))
    assert keys == sorted(f'probe/iou/class{i}' for i in range(15))
    # the dataset's names, when they are 15
    names = tuple(f'c{i:02d}' for i in range(15))
    metric = LinearProbeMetric(num_classes=15, raw_baseline=False)
    metric.dataset_meta = dict(classes=names)
    assert _probe_keys(metric) == sorted(f'probe/iou/{n}' for n in names)
    # ScanNet's 20 names given to a 15-class probe: refused, one line
    with pytest.raises(ValueError) as e:
        LinearProbeMetric(num_classes=15, class_names=SCANNET20_CLASSES)
    assert '20 class_names for num_classes=15' in str(e.value)
    assert '\n' not in str(e.value)
    scannet = set(SCANNET20_CLASSES)
    for n in LinearProbeMetric(num_classes=15).class_names:
        assert n not in scannet
    assert SegMetric(num_classes=15).class_names == NUMBERED15
    metric = SegMetric(num_classes=15)
    metric.dataset_meta = dict(classes=SCANNET20_CLASSES)
    assert metric.class_names == NUMBERED15


@pytest.mark.parametrize('path', [PRETRAIN, SEG], ids=osp.basename)
def test_configs_give_their_names_and_numbers_for_15(path):
    """The shipped configs name ScanNet-20's classes; a 15-class run
    (``--cfg-options num_classes=15``) gets numbered names everywhere, and
    ``class_names=`` names them."""
    from dbbd.registry import METRICS
    cfg = Config.fromfile(path)
    apply_top_level(cfg)

    def metrics(cfg):
        ev = cfg.val_evaluator
        ms = ev if isinstance(ev, list) else [ev]
        return [METRICS.build(m) for m in ms
                if m['type'] in ('LinearProbeMetric', 'SegMetric')]

    (m, ) = metrics(cfg)
    assert m.class_names == tuple(SCANNET20_CLASSES)
    cfg = Config.fromfile(path)
    apply_top_level(cfg, num_classes=15)
    (m, ) = metrics(cfg)
    assert m.num_classes == 15 and m.class_names == NUMBERED15
    names = [f'n{i}' for i in range(15)]
    cfg = Config.fromfile(path)
    apply_top_level(cfg, num_classes=15, class_names=names)
    (m, ) = metrics(cfg)
    assert m.class_names == tuple(names)
    with pytest.raises(ValueError, match='class_names has 14 names but '
                       'num_classes is 15'):
        apply_top_level(Config.fromfile(path), num_classes=15,
                        class_names=names[:14])


def test_dataset_names_its_classes_only_when_told(demo_root):
    from dbbd.datasets import DBBDDataset, SegDataset
    pipe = [dict(type='MultiView', num_views=1),
            dict(type='PackDBBDInputs')]
    assert 'classes' not in DBBDDataset(demo_root, split='val',
                                        pipeline=pipe).metainfo
    names = tuple(f'c{i}' for i in range(15))
    ds = SegDataset(demo_root, split='val', num_classes=20, pipeline=pipe,
                    metainfo=dict(classes=SCANNET20_CLASSES))
    assert ds.metainfo['classes'] == SCANNET20_CLASSES
    with pytest.raises(ValueError, match='metainfo classes has 15 names but '
                       'num_classes is 20'):
        SegDataset(demo_root, split='val', num_classes=20, pipeline=pipe,
                   metainfo=dict(classes=names))
