"""SegMetric against a confusion matrix worked by hand."""
import logging
import math

import pytest
import torch

from dbbd.evaluation import SegMetric
from dbbd.evaluation.metrics.seg_metric import confusion_matrix

NAMES = ('wall', 'floor', 'chair', 'lamp', 'piano')


def scene(sid, gt, pred):
    return dict(scene_id=sid, segment=torch.tensor(gt),
                pred=torch.tensor(pred))


def test_scores_of_a_hand_worked_confusion_matrix():
    # scene a: the ignored point (-1) is predicted 'lamp' and must not
    # count; scene b: one 'floor' point predicted 'lamp', the only lamp:
    # a class only predicted. 'piano' is in neither: it does not count.
    a = scene('a', [0, 0, 1, 1, -1, 2], [0, 1, 1, 1, 3, 0])
    b = scene('b', [0, 2, -1, 1], [0, 2, 2, 3])
    # rows ground truth, columns prediction (counted points only):
    #   wall : wall 2, floor 1        floor: floor 2, lamp 1
    #   chair: wall 1, chair 1        lamp, piano: none
    # IoU: wall 2/4, floor 2/4, chair 1/2, lamp 0/1, piano n/a
    # accuracy per class: 2/3, 2/3, 1/2; lamp and piano n/a
    metric = SegMetric(num_classes=5, class_names=NAMES)
    metric.process({}, [a, b])
    metric.process({}, [a])  # distributed padding repeats a scene
    out = metric.compute_metrics(metric.results)
    assert out['mIoU'] == pytest.approx((0.5 + 0.5 + 0.5 + 0.0) / 4)
    assert out['mAcc'] == pytest.approx((2 / 3 + 2 / 3 + 1 / 2) / 3)
    assert out['allAcc'] == pytest.approx(5 / 8)


def test_one_matrix_over_the_split_not_a_mean_of_scenes():
    a = scene('a', [0, 0, 0, 1], [0, 0, 0, 0])
    b = scene('b', [1], [1])
    metric = SegMetric(num_classes=2)
    metric.process({}, [a, b])
    out = metric.compute_metrics(metric.results)
    # split: wall 3/4, floor 1/2 -> 0.625; the mean of the scenes' own mIoU
    # would be ((3/4 + 0) / 2 + 1) / 2 = 0.6875
    assert out['mIoU'] == pytest.approx((3 / 4 + 1 / 2) / 2)


def test_the_log_has_the_class_table():
    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    lines = []
    handler = logging.Handler()
    handler.emit = lambda r: lines.append(r.getMessage())
    logger.addHandler(handler)
    try:
        metric = SegMetric(num_classes=5, class_names=NAMES)
        metric.process({}, [scene('a', [0, 1, 1], [0, 1, 0])])
        metric.compute_metrics(metric.results)
    finally:
        logger.removeHandler(handler)
    text = '\n'.join(lines)
    rows = {ln.split()[0]: ln.split()[1:] for ln in text.splitlines()
            if ln.split() and ln.split()[0] in NAMES}
    assert rows['wall'][:2] == ['50.00', '100.00']  # IoU 1/2, acc 1/1
    assert rows['floor'][:2] == ['50.00', '50.00']
    assert rows['piano'][:2] == ['n/a', 'n/a']
    assert 'mIoU 50.00' in text


def test_bad_labels_name_the_scene_and_value():
    with pytest.raises(ValueError, match='scene s7: label 5 is outside'):
        metric = SegMetric(num_classes=5)
        metric.process({}, [scene('s7', [0, 5], [0, 1])])
    cm = confusion_matrix(torch.tensor([1, 0]), torch.tensor([-1, -1]), 3)
    assert int(cm.sum()) == 0 and not math.isnan(float(cm.sum()))
    with pytest.raises(ValueError, match='2 class_names'):
        SegMetric(num_classes=3, class_names=('a', 'b'))
