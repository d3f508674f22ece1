"""LinearProbeMetric on hand-checkable features."""
import pytest
import torch
import torch.nn.functional as F

from dbbd.evaluation.metrics.linear_probe import (LinearProbeMetric,
                                                  segmentation_scores)

K = 20


def make_batch(scenes):
    """``scenes``: list of (scene_id, feat (N, D), raw (N, C) or None,
    segment (N,)) -> (data_batch, predict outputs) as DBBD gives them."""
    sizes = [s[1].shape[0] for s in scenes]
    offset = torch.tensor([0] + sizes).cumsum(0)
    inputs = dict(offset=offset)
    if all(s[2] is not None for s in scenes):
        raw = torch.cat([s[2] for s in scenes])
        inputs['view1'] = dict(coord=torch.zeros(raw.shape[0], 3), feat=raw)
    outputs = [dict(scene_id=sid, point_feat=f, segment=seg)
               for sid, f, _, seg in scenes]
    return dict(inputs=inputs, data_samples=[{}] * len(scenes)), outputs


def run_metric(batches, **kwargs):
    metric = LinearProbeMetric(**kwargs)
    for scenes in batches:
        metric.process(*make_batch(scenes))
    return metric.evaluate(sum(len(b) for b in batches))


def labels(n, classes, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.tensor(classes)[torch.randint(len(classes), (n, ),
                                                generator=g)]


def test_segmentation_scores_by_hand():
    gt = torch.tensor([0, 0, 1, 1, 2])
    pred = torch.tensor([0, 1, 1, 1, 0])
    s = segmentation_scores(pred, gt, 4)
    # IoU: class 0: 1 / 3, class 1: 2 / 3, class 2: 0; class 3 absent
    assert s['miou'] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)
    assert s['acc'] == pytest.approx(3 / 5)


def test_one_hot_features_give_miou_one():
    classes = [0, 1, 4, 7, 12]
    scenes = []
    for i in range(4):
        seg = labels(300, classes, i)
        seg[:3] = -1  # unlabelled points are ignored
        feat = F.one_hot(seg.clamp(min=0), K).float()
        scenes.append((f'scene{i}', feat, feat.clone(), seg))
    from dbbd.datasets.readers import SCANNET20_CLASSES
    m = run_metric([scenes[:2], scenes[2:]], class_names=SCANNET20_CLASSES)
    names = ['wall', 'floor', 'chair', 'door', 'desk']  # ScanNet-20's
    assert set(m) == {'probe/miou', 'probe/acc', 'probe/miou_raw',
                      'probe/acc_raw', 'probe/miou_majority',
                      'probe/acc_majority'} | {
        f'probe/iou{s}/{n}' for n in names for s in ('', '_raw')}
    assert m['probe/miou'] == 1.0 and m['probe/acc'] == 1.0
    assert m['probe/miou_raw'] == 1.0 and m['probe/acc_raw'] == 1.0
    assert all(m[f'probe/iou/{n}'] == 1.0 for n in names)


def test_constant_features_predict_the_majority():
    # every scene: 60% class 3, 30% class 5, 10% class 9
    seg = torch.tensor([3] * 60 + [5] * 30 + [9] * 10)
    scenes = [(f's{i}', torch.ones(100, 8), torch.zeros(100, 3), seg)
              for i in range(4)]
    m = run_metric([scenes])
    assert m['probe/acc'] == pytest.approx(0.6)
    assert m['probe/acc_raw'] == pytest.approx(0.6)
    # IoU of class 3 is 0.6, of 5 and 9 zero: mean over the 3 present
    assert m['probe/miou'] == pytest.approx(0.6 / 3)


def test_raw_baseline_is_independent_of_the_model_features():
    classes = [0, 1, 2]
    scenes = []
    for i in range(2):
        seg = labels(200, classes, 10 + i)
        scenes.append((f's{i}', torch.ones(200, 4),
                       F.one_hot(seg, K).float(), seg))
    m = run_metric([scenes])
    assert m['probe/miou_raw'] == 1.0
    assert m['probe/miou'] < 0.5  # constant model features
    # no raw features in the batch: no baseline, no failure
    m = run_metric([[(sid, f, None, s) for sid, f, _, s in scenes]])
    assert not [k for k in m if '_raw' in k]
    assert {'probe/miou', 'probe/acc', 'probe/miou_majority'} <= set(m)


@pytest.fixture
def log_lines():
    """Messages of mmengine's current logger during the test."""
    import logging

    from mmengine.logging import MMLogger
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield lines
    logger.removeHandler(handler)


def test_unlabelled_scenes_are_skipped_and_named(log_lines):
    seg = labels(200, [0, 1], 3)
    feat = F.one_hot(seg, K).float()
    scenes = [('labelled', feat, feat, seg),
              ('nolabels', feat, feat, torch.full((200, ), -1))]
    m = run_metric([scenes])
    # one labelled scene: its points are split in two halves
    assert m['probe/miou'] == 1.0
    assert any('skipped 1 scene(s) without labels: nolabels' in line
               for line in log_lines)
    # nothing labelled at all: no scores, a warning
    assert run_metric([[('nolabels', feat, feat,
                         torch.full((200, ), -1))]]) == {}


def test_deterministic_and_subsampled():
    g = torch.Generator().manual_seed(0)
    scenes = [(f's{i}', torch.randn(5000, 8, generator=g), None,
               labels(5000, [0, 1, 2, 3], 20 + i)) for i in range(3)]
    a = run_metric([scenes], max_points_per_scene=500)
    b = run_metric([scenes[::-1]], max_points_per_scene=500)  # any order
    assert a == b
    metric = LinearProbeMetric(max_points_per_scene=500)
    metric.process(*make_batch(scenes))
    assert [r['feat'].shape[0] for r in metric.results] == [500] * 3


def test_works_next_to_the_loss_metric_without_name_clash():
    from mmengine.evaluator import Evaluator

    import dbbd.evaluation  # noqa: F401  registers the metrics
    ev = Evaluator([dict(type='dbbd.ContrastiveLossMetric'),
                    dict(type='dbbd.LinearProbeMetric')])
    seg = labels(100, [0, 1], 5)
    feat = F.one_hot(seg, K).float()
    data_batch, outputs = make_batch([('a', feat, feat, seg),
                                      ('b', feat, feat, seg)])
    for o in outputs:
        o['losses'] = dict(loss=torch.tensor(2.0),
                           loss_region=torch.tensor(1.0))
    ev.process(outputs, data_batch)
    m = ev.evaluate(2)
    assert m['loss'] == 2.0  # what save_best='loss' monitors
    assert m['probe/miou'] == 1.0 and 'probe/acc_raw' in m


def test_majority_baseline_and_per_class_iou_by_hand(caplog):
    """Class 0 holds 80% of the points, class 3 the rest; features tell
    the two classes apart only on some points of class 3."""
    g = torch.Generator().manual_seed(0)
    scenes = []
    for i in range(2):
        seg = torch.cat([torch.zeros(80, dtype=torch.long),
                         torch.full((20, ), 3)])
        feat = torch.zeros(100, 2)
        feat[80:90, 0] = 1.0  # half of class 3 is visible
        feat += 0.01 * torch.randn(100, 2, generator=g)
        scenes.append((f'scene{i}', feat, None, seg))
    metric = LinearProbeMetric(num_classes=4, raw_baseline=False,
                               class_names=['a', 'b', 'c', 'd'])
    metric.process(*make_batch(scenes))
    m = metric.evaluate(2)
    # majority: every point 'a': IoU(a) = 0.8, IoU(d) = 0, 2 classes
    assert m['probe/acc_majority'] == pytest.approx(0.8)
    assert m['probe/miou_majority'] == pytest.approx(0.4)
    # the probe finds the visible half of 'd': IoU(d) = 10 / 20,
    # IoU(a) = 80 / 90
    assert m['probe/iou/d'] == pytest.approx(0.5)
    assert m['probe/iou/a'] == pytest.approx(80 / 90)
    assert 'probe/iou/b' not in m  # absent from the evaluation part
    with pytest.raises(ValueError, match='class_names'):
        LinearProbeMetric(num_classes=4, class_names=['a'])
