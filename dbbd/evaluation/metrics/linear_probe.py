"""Linear probe: how much of the semantics is linearly readable from frozen
point features.

On the validation scenes, a multinomial logistic regression is fitted to
the labels (``num_classes`` classes) of one part of the scenes and scored (mIoU, overall
accuracy) on the rest, once on the model's point features and once on the
raw input features (``feat`` of view 1: normals, colours) as the baseline.
Pre-training has taught the encoder something when the first beats the
second.
"""
import logging
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log

from dbbd.registry import METRICS
from dbbd.utils.rng import scene_rng
from .seg_metric import (check_class_names, confusion_matrix,
                         iou_from_confusion, resolve_class_names)

__all__ = ['LinearProbeMetric', 'fit_linear_probe', 'predict_linear_probe',
           'segmentation_scores', 'linear_probe_scores']


def _standardise(train: torch.Tensor, *others: torch.Tensor):
    mean = train.mean(0)
    std = train.std(0, unbiased=False)
    std = torch.where(std > 1e-6, std, torch.ones_like(std))
    return [(x - mean) / std for x in (train, ) + others]


def fit_linear_probe(x: torch.Tensor, y: torch.Tensor, num_classes: int,
                     steps: int = 100, weight_decay: float = 1e-3,
                     class_weight: Optional[torch.Tensor] = None):
    """Multinomial logistic regression by full-batch L-BFGS.

    Deterministic: zero initialisation, float64, no randomness, one CPU
    thread.

    Args:
        x (N, D): features (already standardised, see
            :func:`linear_probe_scores`).
        y (N,): labels in ``[0, num_classes)``.
        steps: L-BFGS iterations (one ``step`` with ``max_iter=steps``).
        weight_decay: L2 penalty ``weight_decay / 2 * ||W||^2`` (not on the
            bias), keeps separable problems bounded.
        class_weight (K,): optional weights of the cross-entropy (a
            class-balanced probe: on data where one class holds most points
            an unweighted fit minimises errors by predicting it almost
            everywhere, the majority classifier's mIoU).

    Returns:
        (W (D, K), b (K,)) float64 tensors.
    """
    x = x.double()
    y = y.long()
    w = torch.zeros(x.shape[1], num_classes, dtype=torch.float64,
                    requires_grad=True)
    b = torch.zeros(num_classes, dtype=torch.float64, requires_grad=True)
    cw = None if class_weight is None else torch.as_tensor(
        class_weight, dtype=torch.float64).reshape(-1)
    if cw is not None and cw.numel() != num_classes:
        raise ValueError(f'fit_linear_probe: {cw.numel()} class weights for '
                         f'{num_classes} classes')
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps,
                            history_size=10, tolerance_grad=1e-9,
                            tolerance_change=1e-12,
                            line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(x @ w + b, y, weight=cw) + \
            0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    # One thread: these small float64 products are many times slower when
    # the intra-op threads compete with other work on the machine.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.enable_grad():
            opt.step(closure)
    finally:
        torch.set_num_threads(threads)
    return w.detach(), b.detach()


def predict_linear_probe(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor):
    """Class predictions ``argmax(x @ W + b)`` of shape (N,)."""
    return (x.double() @ w + b).argmax(1)


def segmentation_scores(pred: torch.Tensor, gt: torch.Tensor,
                        num_classes: int) -> Dict[str, object]:
    """mIoU over the classes present in ``gt``, and overall accuracy.

    Returns:
        dict(miou=float, acc=float, iou=list of per-class IoU (NaN for
        classes absent from ``gt``)).
    """
    scores = iou_from_confusion(confusion_matrix(pred, gt, num_classes))
    present = scores['gt_count'] > 0
    iou = torch.where(present, scores['iou'],
                      torch.full_like(scores['iou'], float('nan')))
    return dict(miou=float(iou[present].mean()) if present.any() else 0.0,
                acc=float(scores['tp'].sum() /
                          scores['gt_count'].sum().clamp(min=1)),
                iou=iou.tolist())


def linear_probe_scores(x_train: torch.Tensor, y_train: torch.Tensor,
                        x_eval: torch.Tensor, y_eval: torch.Tensor,
                        num_classes: int = 20, steps: int = 100,
                        weight_decay: float = 1e-3) -> Dict[str, object]:
    """Standardise with the training part's statistics, fit, score.

    Returns:
        :func:`segmentation_scores` of the evaluation part.
    """
    x_train, x_eval = _standardise(x_train.double(), x_eval.double())
    w, b = fit_linear_probe(x_train, y_train, num_classes, steps,
                            weight_decay)
    return segmentation_scores(predict_linear_probe(x_eval, w, b), y_eval,
                               num_classes)


@METRICS.register_module()
class LinearProbeMetric(BaseMetric):
    """Linear-probe mIoU / accuracy of frozen point features.

    Works with ``DBBD``'s ``mode='predict'`` output (one dict per scene with
    ``scene_id``, ``point_feat`` and ``segment``) and the raw batch that
    ``process`` receives (``data_batch['inputs']['view1']['feat']``, the
    baseline's features). Use it next to ``ContrastiveLossMetric``::

        val_evaluator = [
            dict(type='ContrastiveLossMetric'),
            dict(type='LinearProbeMetric'),
        ]

    Reported (prefix ``probe``): ``probe/miou``, ``probe/acc`` (the model's
    features), ``probe/miou_raw``, ``probe/acc_raw`` (the input features)
    and ``probe/miou_majority``, ``probe/acc_majority`` (every point given
    the most frequent class of the fitting part: what a probe that learned
    nothing scores); per class present in the evaluation part,
    ``probe/iou/<class>`` and ``probe/iou_raw/<class>``, also logged as a
    table with each class's share of the points. Fractions in [0, 1]; mIoU
    is over the classes present in the evaluation part. When one class
    holds most points (walls and floors of real scans), accuracy and even
    mIoU move little whatever the features are: read the per-class IoU of
    the smaller classes against the raw baseline.

    Protocol, deterministic for a given ``seed``:

    - per scene, up to ``max_points_per_scene`` labelled points (labels in
      ``[0, num_classes)``; -1 is unlabelled) are drawn with a generator
      seeded by ``(seed, crc32(scene_id))``; scenes with no labelled point
      are skipped and named in the log;
    - scenes sorted by id; even positions fit the probe, odd positions
      score it (half of the scenes each). With one labelled scene its
      points are split in two halves at random (``seed``);
    - the fitting part is capped at ``max_train_points`` (random subset);
      features are standardised with its mean / std; then
      :func:`fit_linear_probe` (L-BFGS, ``steps`` iterations, L2
      ``weight_decay``), in float64 on the CPU.

    Memory: ``scenes * max_points_per_scene * (D + C) * 4`` bytes (ScanNet
    val, 312 scenes, D = 96: about 250 MB at the default 2000).

    Args:
        num_classes: label classes (ScanNet-20: 20).
        max_points_per_scene: labelled points kept per scene.
        max_train_points: cap on the points the probe is fitted on.
        steps: L-BFGS iterations.
        weight_decay: L2 penalty of the weights.
        raw_baseline: also probe the raw input features.
        class_names: one name per class (default: the dataset's
            ``metainfo['classes']`` when ``num_classes`` many, else
            ``class0, class1, ...`` whatever ``num_classes`` is;
            :func:`~dbbd.evaluation.metrics.seg_metric.resolve_class_names`).
            Configs set it from their top-level ``class_names``.
        feat_key: which entry of the predict output to probe
            (``'point_feat'``: G2L; ``'point_feat_l2g'``: L2G).
        seed: seed of the subsampling and of the one-scene split.
        collect_device, prefix, collect_dir: as for mmengine's
            ``BaseMetric`` (default prefix ``probe``).
    """
    default_prefix = 'probe'

    def __init__(self,
                 num_classes: int = 20,
                 max_points_per_scene: int = 2000,
                 max_train_points: int = 100000,
                 steps: int = 100,
                 weight_decay: float = 1e-3,
                 raw_baseline: bool = True,
                 class_names: Optional[Sequence[str]] = None,
                 feat_key: str = 'point_feat',
                 seed: int = 0,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = None,
                 collect_dir: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix,
                         collect_dir=collect_dir)
        if num_classes < 2:
            raise ValueError('LinearProbeMetric: num_classes must be >= 2')
        self.num_classes = num_classes
        self.max_points_per_scene = max_points_per_scene
        self.max_train_points = max_train_points
        self.steps = steps
        self.weight_decay = weight_decay
        self.raw_baseline = raw_baseline
        self._class_names = check_class_names('LinearProbeMetric',
                                              num_classes, class_names)
        self.feat_key = feat_key
        self.seed = seed

    @property
    def class_names(self):
        """The ``num_classes`` class names (:func:`resolve_class_names`).
        """
        return resolve_class_names(self.num_classes, self._class_names,
                                   self.dataset_meta)

    # ------------------------------------------------------------------
    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        raw_all = None
        if self.raw_baseline and isinstance(data_batch, dict):
            view1 = data_batch.get('inputs', {}).get('view1') or {}
            raw_all = view1.get('feat')
        start = 0
        for i, out in enumerate(data_samples):
            scene_id = str(out.get('scene_id', i))
            if self.feat_key not in out:
                raise KeyError(
                    f'LinearProbeMetric: the model output has no '
                    f'{self.feat_key!r} (keys: {sorted(out)}); '
                    "'point_feat_l2g' needs dual_view=True")
            feat = out[self.feat_key].detach()
            n = feat.shape[0]
            raw = None
            if raw_all is not None:
                raw = torch.as_tensor(raw_all[start:start + n]).detach()
                if raw.shape[0] != n:  # not the batch of these outputs
                    raw = None
            start += n
            seg = out.get('segment')
            if seg is None:
                self.results.append(dict(scene_id=scene_id, skipped=True))
                continue
            seg = torch.as_tensor(seg).detach().cpu().long()
            idx = torch.nonzero((seg >= 0) & (seg < self.num_classes))[:, 0]
            if idx.numel() == 0:
                self.results.append(dict(scene_id=scene_id, skipped=True))
                continue
            if idx.numel() > self.max_points_per_scene:
                pick = scene_rng(self.seed, scene_id).choice(
                    idx.numel(), self.max_points_per_scene, replace=False)
                idx = idx[torch.from_numpy(np.sort(pick))]
            def take(x):
                return x.index_select(0, idx.to(x.device)).float().cpu()

            self.results.append(dict(
                scene_id=scene_id, skipped=False, feat=take(feat),
                raw=None if raw is None else take(raw), label=seg[idx]))

    # ------------------------------------------------------------------
    def _split(self, scenes: List[dict]):
        """Fitting and evaluation parts: lists of (feat, raw, label)."""
        if len(scenes) >= 2:
            return ([(s['feat'], s['raw'], s['label']) for s in scenes[0::2]],
                    [(s['feat'], s['raw'], s['label']) for s in scenes[1::2]])
        s = scenes[0]
        n = s['label'].shape[0]
        perm = torch.from_numpy(
            np.random.default_rng(self.seed).permutation(n))
        tr, ev = perm[:n // 2].sort().values, perm[n // 2:].sort().values

        def part(ix):
            return (s['feat'][ix], None if s['raw'] is None else s['raw'][ix],
                    s['label'][ix])

        return [part(tr)], [part(ev)]

    def compute_metrics(self, results: list) -> Dict[str, float]:
        by_id = {}
        for r in results:  # distributed padding repeats scenes: keep one
            by_id.setdefault(r['scene_id'], r)
        scenes = [by_id[k] for k in sorted(by_id)]
        skipped = [s['scene_id'] for s in scenes if s['skipped']]
        scenes = [s for s in scenes if not s['skipped']]
        if skipped:
            shown = ', '.join(skipped[:10]) + (' ...' if len(skipped) > 10
                                               else '')
            print_log(f'LinearProbeMetric: skipped {len(skipped)} scene(s) '
                      f'without labels: {shown}', logger='current')
        if not scenes:
            print_log('LinearProbeMetric: no labelled validation scene; no '
                      'linear-probe scores this time', logger='current',
                      level=logging.WARNING)
            return {}
        train, evaluate = self._split(scenes)

        y_tr = torch.cat([p[2] for p in train])
        y_ev = torch.cat([p[2] for p in evaluate])
        keep = None
        if y_tr.shape[0] > self.max_train_points:
            keep = torch.from_numpy(np.sort(np.random.default_rng(
                self.seed).choice(y_tr.shape[0], self.max_train_points,
                                  replace=False)))
            y_tr = y_tr[keep]

        def stack(parts, j, keep=None):
            x = torch.cat([p[j] for p in parts])
            return x if keep is None else x[keep]

        metrics = {}
        kinds = [('', 0)]
        if self.raw_baseline:
            if all(p[1] is not None for p in train + evaluate):
                kinds.append(('_raw', 1))
            else:
                print_log('LinearProbeMetric: raw input features not found '
                          "in data_batch['inputs']['view1']['feat']; no "
                          'baseline', logger='current', level=logging.WARNING)
        iou = {}
        for suffix, j in kinds:
            scores = linear_probe_scores(stack(train, j, keep), y_tr,
                                         stack(evaluate, j), y_ev,
                                         self.num_classes, self.steps,
                                         self.weight_decay)
            metrics[f'miou{suffix}'] = scores['miou']
            metrics[f'acc{suffix}'] = scores['acc']
            iou[suffix] = scores['iou']
        majority = int(torch.bincount(y_tr, minlength=self.num_classes)
                       .argmax())
        scores = segmentation_scores(torch.full_like(y_ev, majority), y_ev,
                                     self.num_classes)
        metrics['miou_majority'] = scores['miou']
        metrics['acc_majority'] = scores['acc']
        counts = torch.bincount(y_ev, minlength=self.num_classes)
        present = [k for k in range(self.num_classes) if counts[k] > 0]
        for suffix, values in iou.items():
            for k in present:
                metrics[f'iou{suffix}/{self.class_names[k]}'] = values[k]
        self._log_table(present, counts, iou, majority)
        n_cls = len(present)
        parts = (f'{len(train)} scene(s)', f'{len(evaluate)} scene(s)') \
            if len(scenes) > 1 else ('half', 'the other half of the points '
                                     f'of {scenes[0]["scene_id"]}')
        print_log(
            f'LinearProbeMetric: fitted on {parts[0]} ({y_tr.shape[0]} '
            f'points), scored on {parts[1]} ({y_ev.shape[0]} points, '
            f'{n_cls} classes present)', logger='current')
        return metrics

    def _log_table(self, present, counts, iou, majority):
        """One line per class present: its share of the evaluated points
        and its IoU with the features and with the raw input."""
        total = max(int(counts.sum()), 1)
        width = max(len(self.class_names[k]) for k in present)
        head = f'{"class":<{width}}  points  IoU    IoU_raw'
        lines = [head]
        for k in present:
            raw = iou.get('_raw')
            lines.append(
                f'{self.class_names[k]:<{width}}  '
                f'{100 * int(counts[k]) / total:5.1f}%  '
                f'{iou[""][k]:.3f}  '
                f'{"-" if raw is None else f"{raw[k]:.3f}"}')
        print_log('LinearProbeMetric per class (majority class: '
                  f'{self.class_names[majority]}):\n' + '\n'.join(lines),
                  logger='current')
