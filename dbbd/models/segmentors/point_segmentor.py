"""Semantic segmentation of point clouds: a backbone and a segmentation head.

Two kinds of backbone fit, told apart by the backbone's ``needs_tree``
attribute:

- **tree backbones** (``needs_tree = True``, e.g.
  :class:`~dbbd.models.backbones.DBBDTreeBackbone`) read the region tree of
  the batch and are called as ``backbone(inputs, view='view1') -> (P, D)``
  (the DBBD encoder read top-down, as ``DBBD``'s ``mode='tensor'``). The
  tree indexes every point of the scene, so their pipelines keep every
  point (no ``GridSample``);
- **scene backbones** (no ``needs_tree`` or ``needs_tree = False``, e.g. a
  sparse-convolution network) are called as ``backbone(coord (P, 3),
  feat (P, C), offset (B + 1,)) -> (P, D)`` with ``inputs['view1']`` and
  ``inputs['offset']``. Their pipelines may subsample with ``GridSample``;
  predictions are then carried back to every point through
  ``inputs['inverse']``.

Either way the backbone has an ``out_channels`` attribute (D).
"""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from dbbd.registry import MODELS
from ..backbones.tree_backbone import build_part, check_width
from ..base import DBBDBaseModel

__all__ = ['PointSegmentor', 'view_keys']


def view_keys(inputs: dict) -> List[str]:
    """``['view1', 'view2', ...]``: the views packed in a batch."""
    keys = [k for k in inputs if k.startswith('view') and k[4:].isdigit()]
    return sorted(keys, key=lambda k: int(k[4:]))


@MODELS.register_module()
class PointSegmentor(DBBDBaseModel):
    """Per-point semantic segmentation (ScanNet-20 by default).

    Args:
        backbone: backbone config (a tree or a scene backbone, see the
            module docstring).
        head: head config (``LinearSegHead``, ``MLPSegHead``);
            ``in_channels`` defaults to the backbone's ``out_channels``,
            ``num_classes`` to this model's.
        num_classes: number of classes K (20). The top-level
            ``num_classes`` of a config sets it with the metric's.
        class_names: optional K class names (kept for tools; the metric
            has its own).
        class_weight: optional K weights of the cross-entropy.
        ignore_index: label of unlabelled points (-1): never in the loss.
        freeze_backbone: the linear-probe setting: the backbone stays in
            eval mode, gets no gradients (its features are computed under
            ``no_grad``) and its weights do not change.
        pretrained: path of a DBBD training checkpoint or of an encoder
            export; loaded into the backbone by :meth:`init_weights` (see
            :func:`~dbbd.models.segmentors.pretrained.load_pretrained_backbone`).
            Set it with the config's top-level ``pretrained``.
        data_preprocessor: default ``dict(type='DBBDDataPreprocessor')``.
        init_cfg: mmengine weight init config.

    ``forward(inputs, data_samples=None, mode='tensor')`` with the
    ``inputs`` of :func:`dbbd.datasets.dbbd_collate`:

    - ``'loss'``: ``dict(loss_seg, acc_seg)``: cross-entropy on the labelled
      points of view 1 (mean over them; 0 when a batch has none) and their
      accuracy (logged, not a loss);
    - ``'predict'``: a list with one dict per scene: ``scene_id``, ``pred
      (N_i,)`` predicted class ids and ``segment (N_i,)`` labels, at the
      scene's full resolution (every point once, through ``inverse`` after
      grid sampling). With several views (test-time augmentation) the
      logits of all views are averaged;
    - ``'tensor'``: logits ``(P, K)`` of view 1, at network resolution.
    """

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 num_classes: int = 20,
                 class_names: Optional[Sequence[str]] = None,
                 class_weight: Optional[Sequence[float]] = None,
                 ignore_index: int = -1,
                 freeze_backbone: bool = False,
                 pretrained: Optional[str] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        if not isinstance(num_classes, int) or isinstance(
                num_classes, bool) or num_classes < 2:
            raise ValueError(f'PointSegmentor: num_classes must be an int '
                             f'>= 2, got {num_classes!r}')
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f'PointSegmentor: {len(class_names)} '
                             f'class_names for num_classes={num_classes}')
        self.backbone = build_part(backbone)
        d = self.backbone.out_channels
        self.head = build_part(head, in_channels=d, num_classes=num_classes)
        check_width('head', 'in_channels', self.head.in_channels, d)
        check_width('head', 'num_classes', self.head.num_classes,
                    num_classes)
        self.num_classes = num_classes
        self.class_names = None if class_names is None else tuple(
            class_names)
        if class_weight is not None:
            if len(class_weight) != num_classes:
                raise ValueError(f'PointSegmentor: {len(class_weight)} '
                                 f'class weights for {num_classes} classes')
            self.register_buffer(
                'class_weight',
                torch.tensor(list(class_weight), dtype=torch.float32),
                persistent=False)
        else:
            self.class_weight = None
        self.ignore_index = ignore_index
        self.needs_tree = bool(getattr(self.backbone, 'needs_tree', False))
        self.freeze_backbone = freeze_backbone
        self.pretrained = pretrained
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    # ------------------------------------------------------------------
    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:
            self.backbone.eval()
        return self

    def init_weights(self):
        """mmengine's initialisation, then the ``pretrained`` backbone
        weights (when set)."""
        super().init_weights()
        if self.pretrained is not None:  # '' is refused there, not skipped
            from .pretrained import load_pretrained_backbone
            fresh = [name for name, m in self.named_children()
                     if name != 'backbone' and any(
                         True for _ in m.parameters())]
            load_pretrained_backbone(self.backbone, self.pretrained, fresh)

    # ------------------------------------------------------------------
    def tensor(self, inputs: dict) -> torch.Tensor:
        """``mode='tensor'``: :meth:`logits`."""
        return self.logits(inputs)

    def _run_backbone(self, inputs: dict, view: str) -> torch.Tensor:
        if not self.needs_tree:
            v = inputs[view]
            return self.backbone(v['coord'], v['feat'], inputs['offset'])
        if 'tree' not in inputs and 'point_region' not in inputs:
            from dbbd.utils.config_check import ConfigError
            raise ConfigError(
                f'{type(self.backbone).__name__} reads the region tree, but '
                'the batch has none (GridSample drops it): remove GridSample '
                'from the pipelines of a tree backbone')
        return self.backbone(inputs, view=view)

    def extract_feat(self, inputs: dict, view: str = 'view1'
                     ) -> torch.Tensor:
        """Point features ``(P, D)`` of one view (no gradient into a frozen
        backbone)."""
        if self.freeze_backbone:
            with torch.no_grad():
                return self._run_backbone(inputs, view)
        return self._run_backbone(inputs, view)

    def logits(self, inputs: dict, view: str = 'view1') -> torch.Tensor:
        """Class logits ``(P, K)`` of one view."""
        return self.head(self.extract_feat(inputs, view))

    def loss(self, inputs: dict, data_samples: Optional[list] = None
             ) -> Dict[str, torch.Tensor]:
        """Cross-entropy over the labelled points of view 1."""
        logits = self.logits(inputs).float()
        target = inputs['segment']
        valid = target != self.ignore_index
        safe = torch.where(valid, target, torch.zeros_like(target))
        per_point = F.cross_entropy(logits, safe, weight=self.class_weight,
                                    reduction='none')
        weight = valid.to(per_point.dtype)
        if self.class_weight is not None:
            weight = weight * self.class_weight[safe]
        # a batch without labelled points gives 0, not NaN (no host sync)
        loss = (per_point * weight).sum() / weight.sum().clamp(min=1e-12)
        correct = (logits.detach().argmax(1) == target) & valid
        acc = correct.sum().float() / valid.sum().clamp(min=1).float()
        return dict(loss_seg=loss, acc_seg=acc)

    @torch.no_grad()
    def predict(self, inputs: dict, data_samples: Optional[list] = None
                ) -> List[dict]:
        """One dict per scene at full resolution (class docstring)."""
        views = view_keys(inputs)
        logits = self.logits(inputs, views[0]).float()
        for view in views[1:]:
            logits = logits + self.logits(inputs, view).float()
        pred = (logits / len(views)).argmax(1)
        if 'inverse' in inputs:  # grid-sampled: back to every point
            pred = pred.index_select(0, inputs['inverse'])
            segment, offset = inputs['origin_segment'], inputs[
                'origin_offset']
        else:
            segment, offset = inputs['segment'], inputs['offset']
        sizes = torch.diff(offset).tolist()
        results = []
        for i, (p, s) in enumerate(zip(pred.split(sizes),
                                       segment.split(sizes))):
            sample = data_samples[i] if data_samples else {}
            results.append(dict(scene_id=sample.get('scene_id', str(i)),
                                pred=p, segment=s))
        return results
