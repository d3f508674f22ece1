"""Semantic segmentation scores: one confusion matrix over a whole split.

mIoU, mAcc and allAcc as Pointcept and mmdetection3d report them on
ScanNet: every point of every scene of the split goes into ONE confusion
matrix (not a mean of per-scene scores), and the scores are read off it.
"""
import logging
import math
from typing import Dict, List, Optional, Sequence

import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from dbbd.registry import METRICS

__all__ = ['SegMetric', 'confusion_matrix', 'iou_from_confusion',
           'format_class_table', 'check_class_names', 'resolve_class_names']


def check_class_names(owner: str, num_classes: int,
                      class_names: Optional[Sequence[str]]):
    """``class_names`` as a tuple of str (None stays None); ValueError (one
    line naming ``owner``) when they are not ``num_classes`` many."""
    if class_names is None:
        return None
    if isinstance(class_names, str) or len(class_names) != num_classes:
        got = (f'{class_names!r}' if isinstance(class_names, str) else
               f'{len(class_names)} class_names')
        raise ValueError(
            f'{owner}: {got} for num_classes={num_classes}; give one name '
            'per class (or set the top-level num_classes and class_names, '
            'which set the model, the metrics and the datasets together)')
    return tuple(str(c) for c in class_names)


def resolve_class_names(num_classes: int,
                        class_names: Optional[Sequence[str]] = None,
                        dataset_meta: Optional[dict] = None):
    """The names of ``num_classes`` classes, by one rule for every
    metric:

    1. ``class_names`` when given (the metric's argument, which configs
       set from their top-level ``class_names``);
    2. else the dataset's names (``dataset_meta['classes']``, the
       dataset's ``metainfo``) when they are ``num_classes`` many;
    3. else numbered: ``class0``, ``class1``, ... (also for 20 classes:
       ScanNet-20's names come only from a config or dataset that gives
       them, so a dataset of other classes never shows them).

    Returns:
        tuple of ``num_classes`` str.
    """
    if class_names is not None:
        return tuple(str(c) for c in class_names)
    names = (dataset_meta or {}).get('classes')
    if names is not None and not isinstance(names, str) and \
            len(names) == num_classes:
        return tuple(str(c) for c in names)
    return tuple(f'class{i}' for i in range(num_classes))


def confusion_matrix(pred: torch.Tensor, gt: torch.Tensor, num_classes: int,
                     ignore_index: int = -1) -> torch.Tensor:
    """``(K, K)`` int64 counts, rows the ground truth, columns the
    prediction.

    Points whose ground truth is ``ignore_index`` are not counted. No
    boolean indexing (a host synchronisation on a GPU): ignored points are
    counted in an extra bin that is dropped.

    Args:
        pred (N,): predicted class ids in ``[0, K)``.
        gt (N,): class ids in ``[0, K)`` or ``ignore_index``.

    Raises:
        ValueError: a ground-truth label outside ``[0, K)`` that is not
            ``ignore_index``, or a prediction outside ``[0, K)``.
    """
    k = int(num_classes)
    gt, pred = gt.reshape(-1).long(), pred.reshape(-1).long()
    if gt.shape != pred.shape:
        raise ValueError(f'confusion_matrix: {pred.numel()} predictions for '
                         f'{gt.numel()} labels')
    ignored = gt == ignore_index
    bad = ~ignored & ((gt < 0) | (gt >= k))
    if bool(bad.any()):
        raise ValueError(f'label {int(gt[bad][0])} is outside [0, {k}) and '
                         f'is not the ignore index {ignore_index}')
    if pred.numel() and bool(((pred < 0) | (pred >= k)).any()):
        raise ValueError(f'prediction outside [0, {k})')
    index = torch.where(ignored, torch.full_like(gt, k * k), gt * k + pred)
    return torch.bincount(index, minlength=k * k + 1)[:k * k].reshape(k, k)


def iou_from_confusion(cm: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-class scores of a confusion matrix (float64, ``(K,)`` each).

    Returns:
        dict: ``iou`` (NaN where the class is in neither the ground truth
        nor the prediction), ``acc`` (recall; NaN where the class is absent
        from the ground truth), ``gt_count``, ``pred_count``, ``tp``.
    """
    cm = cm.double()
    tp = cm.diag()
    gt_count, pred_count = cm.sum(1), cm.sum(0)
    union = gt_count + pred_count - tp
    nan = torch.full_like(tp, float('nan'))
    return dict(iou=torch.where(union > 0, tp / union.clamp(min=1), nan),
                acc=torch.where(gt_count > 0, tp / gt_count.clamp(min=1),
                                nan),
                gt_count=gt_count, pred_count=pred_count, tp=tp)


def _nanmean(x: torch.Tensor) -> float:
    ok = ~torch.isnan(x)
    return float(x[ok].mean()) if bool(ok.any()) else float('nan')


def format_class_table(names: Sequence[str], scores: Dict[str, torch.Tensor]
                       ) -> str:
    """The per-class table (IoU and accuracy in percent, points counted)."""
    width = max([len('class')] + [len(n) for n in names])
    lines = [f'{"class":<{width}}  {"IoU":>6}  {"Acc":>6}  {"points":>10}',
             f'{"-" * width}  {"-" * 6}  {"-" * 6}  {"-" * 10}']

    def pct(v):
        return '   n/a' if math.isnan(v) else f'{100 * v:6.2f}'

    for i, name in enumerate(names):
        lines.append(f'{name:<{width}}  {pct(float(scores["iou"][i]))}  '
                     f'{pct(float(scores["acc"][i]))}  '
                     f'{int(scores["gt_count"][i]):>10d}')
    return '\n'.join(lines)


@METRICS.register_module()
class SegMetric(BaseMetric):
    """mIoU, mAcc and allAcc of a segmentation split, with a per-class
    table in the log.

    Consumes :class:`~dbbd.models.segmentors.PointSegmentor`'s
    ``mode='predict'`` output: one dict per scene with ``scene_id``,
    ``pred (N,)`` and ``segment (N,)`` at the scene's full resolution.

    - one confusion matrix over every point of every scene (a scene seen
      twice, as distributed evaluation pads the last batch, counts once);
    - points labelled ``ignore_index`` never count;
    - ``mIoU``: mean IoU over the classes present in the ground truth or
      the prediction (a class in neither does not count; a class only
      predicted counts with IoU 0); ``mAcc``: mean per-class accuracy over
      the classes present in the ground truth; ``allAcc``: the fraction of
      counted points predicted right. Fractions in [0, 1].

    Args:
        num_classes: number of classes K (ScanNet-20: 20).
        class_names: K names for the table (default: the dataset's
            ``metainfo['classes']`` when K many, else ``class0``, ...;
            :func:`resolve_class_names`).
        ignore_index: label of unlabelled points (-1).
        collect_device, prefix, collect_dir: as for mmengine's
            ``BaseMetric`` (no prefix by default: keys ``mIoU``, ``mAcc``,
            ``allAcc``, which ``save_best='mIoU'`` names).
    """
    default_prefix = ''  # keys as they are; '' also silences mmengine

    def __init__(self,
                 num_classes: int = 20,
                 class_names: Optional[Sequence[str]] = None,
                 ignore_index: int = -1,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        if not isinstance(num_classes, int) or isinstance(
                num_classes, bool) or num_classes < 2:
            raise ValueError(f'SegMetric: num_classes must be an int >= 2, '
                             f'got {num_classes!r}')
        self.num_classes = num_classes
        self._class_names = check_class_names('SegMetric', num_classes,
                                              class_names)
        self.ignore_index = ignore_index

    @property
    def class_names(self):
        """The K class names (:func:`resolve_class_names`)."""
        return resolve_class_names(self.num_classes, self._class_names,
                                   self.dataset_meta)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for i, out in enumerate(data_samples):
            scene_id = str(out.get('scene_id', i))
            try:
                cm = confusion_matrix(out['pred'], out['segment'],
                                      self.num_classes, self.ignore_index)
            except ValueError as e:
                raise ValueError(f'SegMetric: scene {scene_id}: {e}') from None
            self.results.append(dict(scene_id=scene_id, cm=cm.cpu()))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        by_id = {}
        for r in results:  # distributed padding repeats scenes: keep one
            by_id.setdefault(r['scene_id'], r['cm'])
        if not by_id:
            print_log('SegMetric: no scene was evaluated', logger='current',
                      level=logging.WARNING)
            return {}
        cm = torch.stack(list(by_id.values())).sum(0)
        scores = iou_from_confusion(cm)
        total = float(cm.sum())
        metrics = dict(mIoU=_nanmean(scores['iou']),
                       mAcc=_nanmean(scores['acc']),
                       allAcc=float(scores['tp'].sum()) / total
                       if total else float('nan'))
        print_log(
            f'SegMetric: {len(by_id)} scene(s), {int(total)} labelled '
            'points\n' + format_class_table(self.class_names, scores) +
            '\n' + '  '.join(f'{k} {100 * v:.2f}' for k, v in
                             metrics.items()), logger='current')
        return metrics
