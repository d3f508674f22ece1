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
import math
import numbers
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from dbbd.registry import MODELS, WEIGHT_INITIALIZERS
from dbbd.utils.config_check import ConfigError
from ..backbones.tree_backbone import build_part, check_width
from ..base import DBBDBaseModel
from ..losses.seg_losses import auto_class_weight

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
        class_weight: weights of the classes in the cross-entropy terms:
            None (unweighted), a list of K numbers >= 0, or ``'auto'``:
            computed once, when training starts, from the labelled points
            of the training split (after its label-efficient subset) by
            :func:`~dbbd.models.losses.auto_class_weight` (ENet's ``1 /
            ln(1.02 + f_k)``, mean 1 over the classes present, 0 for a
            class without a labelled point). ``ClassWeightHook`` delivers
            the counts (``tools/train.py`` adds it) and logs the weights;
            they are a buffer of the model, saved in its checkpoints, so a
            resumed run and ``tools/test.py`` read the same ones.
        losses: the loss terms, each a config of a segmentation loss
            (``SegCrossEntropyLoss``, ``LovaszSoftmaxLoss``) logged under
            its ``loss_name`` (``loss_ce``, ``loss_lovasz``); mmengine sums
            them. None: one cross-entropy logged as ``loss_seg``. The
            terms get the model's ``ignore_index``, and the
            cross-entropy its ``class_weight``.
        ignore_index: label of unlabelled points (-1): never in the loss.
        freeze_backbone: the linear-probe setting: the backbone stays in
            eval mode, gets no gradients (its features are computed under
            ``no_grad``) and its weights do not change.
        pretrained: path of a DBBD training checkpoint or of an encoder
            export; loaded into the backbone by :meth:`init_weights` (see
            :func:`~dbbd.engine.pretrained.load_pretrained_backbone`).
            Set it with the config's top-level ``pretrained``.
        data_preprocessor: default ``dict(type='DBBDDataPreprocessor')``.
        init_cfg: mmengine weight init config.

    ``forward(inputs, data_samples=None, mode='tensor')`` with the
    ``inputs`` of :func:`dbbd.datasets.dbbd_collate`:

    - ``'loss'``: one entry per loss term on the labelled points of view 1
      (by default ``loss_seg``, their mean cross-entropy; 0 when a batch
      has none) and ``acc_seg``, their accuracy (logged, not a loss);
    - ``'predict'``: a list with one dict per scene: ``scene_id``, ``pred
      (N_i,)`` predicted class ids and ``segment (N_i,)`` labels, at the
      scene's full resolution (every point once, through ``inverse`` after
      grid sampling). With several views (test-time augmentation) the
      logits of all views are averaged;
    - ``'tensor'``: logits ``(P, K)`` of view 1, at network resolution.

    Attributes:
        class_weight: ``(K,)`` float32 buffer, or None (no weights).
        class_weight_auto: whether ``class_weight='auto'``.
        class_weight_ready: False while ``'auto'`` weights are unset (the
            training loss then stops with a one-line error).
        loss_terms: the loss terms (``nn.ModuleList``).
    """

    #: state keys that may be missing from a checkpoint or present only in
    #: it (``StrictLoadHook`` allows them): see :meth:`_load_from_state_dict`
    optional_state_keys = ('class_weight', )

    def __init__(self,
                 backbone: dict,
                 head: dict,
                 num_classes: int = 20,
                 class_names: Optional[Sequence[str]] = None,
                 class_weight: Union[None, str, Sequence[float]] = None,
                 losses: Optional[Sequence[dict]] = None,
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
        if not isinstance(ignore_index, int) or isinstance(ignore_index,
                                                            bool):
            raise ConfigError(f'PointSegmentor: ignore_index must be an int, '
                              f'got {ignore_index!r}')
        self.ignore_index = ignore_index
        self._init_class_weight(class_weight, num_classes)
        self.loss_terms = self._build_losses(losses)
        self.needs_tree = bool(getattr(self.backbone, 'needs_tree', False))
        self.freeze_backbone = freeze_backbone
        self.pretrained = pretrained
        if freeze_backbone:
            self.backbone.requires_grad_(False)
            self.backbone.eval()

    # ------------------------------------------------------------------
    # class weights and loss terms
    def _init_class_weight(self, class_weight, num_classes):
        """The ``class_weight`` buffer: absent (None), a fixed list (not
        saved: the config is its source), or ``'auto'`` (zeros until
        :meth:`set_class_counts`; saved with the checkpoint)."""
        self.class_weight_auto = isinstance(class_weight, str) and \
            class_weight == 'auto'
        # True once the auto weights hold values (set, or loaded)
        self.class_weight_ready = not self.class_weight_auto
        if class_weight is None:
            self.class_weight = None
            return
        if self.class_weight_auto:
            self.register_buffer('class_weight', torch.zeros(num_classes),
                                 persistent=True)
            return
        expected = (f"None, 'auto' or a list of {num_classes} finite numbers "
                    '>= 0, not all 0')
        ok = isinstance(class_weight, (list, tuple)) and all(
            isinstance(v, numbers.Real) and not isinstance(v, bool)
            and math.isfinite(v) and v >= 0 for v in class_weight)
        if not ok:
            raise ConfigError(f'PointSegmentor: class_weight must be '
                              f'{expected}, got {class_weight!r}')
        if len(class_weight) != num_classes or not any(class_weight):
            raise ConfigError(
                f'PointSegmentor: class_weight has {len(class_weight)} '
                f'values for num_classes={num_classes}; give one per class, '
                "or class_weight='auto'"
                if len(class_weight) != num_classes else
                f'PointSegmentor: class_weight must be {expected}, got '
                f'{class_weight!r}')
        self.register_buffer(
            'class_weight',
            torch.tensor(list(class_weight), dtype=torch.float32),
            persistent=False)

    def _build_losses(self, losses) -> nn.ModuleList:
        if losses is None:
            losses = [dict(type='SegCrossEntropyLoss', loss_name='loss_seg')]
        if isinstance(losses, (dict, nn.Module)) or not isinstance(
                losses, (list, tuple)) or not losses:
            raise ConfigError(
                'PointSegmentor: losses must be None or a non-empty list of '
                "loss configs (dict(type='SegCrossEntropyLoss'), "
                f"dict(type='LovaszSoftmaxLoss')), got {losses!r}")
        terms = []
        for i, cfg in enumerate(losses):
            if isinstance(cfg, nn.Module):
                term = cfg
            elif isinstance(cfg, dict) and 'type' in cfg:
                cfg = dict(cfg)
                given = cfg.setdefault('ignore_index', self.ignore_index)
                if given != self.ignore_index:
                    raise ConfigError(
                        f'PointSegmentor: losses[{i}].ignore_index={given!r} '
                        f'differs from the model\'s ignore_index='
                        f'{self.ignore_index}; leave it out (the loss terms '
                        'take the model\'s)')
                term = MODELS.build(cfg)
            else:
                raise ConfigError(
                    f'PointSegmentor: losses[{i}] must be a loss config (a '
                    f"dict with a type), got {cfg!r}")
            if not isinstance(getattr(term, 'loss_name', None), str):
                raise ConfigError(
                    f'PointSegmentor: losses[{i}] ({type(term).__name__}) is '
                    'not a segmentation loss term (it has no loss_name)')
            terms.append(term)
        names = [t.loss_name for t in terms]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(
                f'PointSegmentor: two loss terms log as {dup[0]!r}; give '
                "each a loss_name of its own (containing 'loss')")
        if 'acc_seg' in names:
            raise ConfigError("PointSegmentor: loss_name 'acc_seg' is the "
                              "accuracy's; choose another")
        return nn.ModuleList(terms)

    def set_class_counts(self, counts) -> torch.Tensor:
        """Set the ``'auto'`` class weights from the labelled training
        points per class.

        Args:
            counts: ``(K,)`` ints >= 0 (``SegDataset.class_counts()``).

        Returns:
            the weights, ``(K,)`` float32 (also in :attr:`class_weight`).

        Raises:
            ConfigError: the model's class_weight is not ``'auto'``, a count
                vector of another length, or no labelled point.
        """
        if not self.class_weight_auto:
            raise ConfigError("PointSegmentor: set_class_counts is for "
                              "class_weight='auto'")
        counts = np.asarray(counts).reshape(-1)
        if counts.shape[0] != self.num_classes:
            raise ConfigError(
                f"PointSegmentor: class_weight='auto' got {counts.shape[0]} "
                f'class counts for num_classes={self.num_classes}; set the '
                'same num_classes on the training dataset and the model (the '
                'top-level num_classes of the config sets both)')
        weight = auto_class_weight(counts)
        with torch.no_grad():
            self.class_weight.copy_(weight.to(self.class_weight.device))
        self.class_weight_ready = True
        return weight

    def class_weight_line(self, counts=None, names=None) -> str:
        """The weights for one log line: ``name weight (share of the
        labelled points)`` per class (the share when ``counts`` is given),
        then the classes of weight 0 (no labelled point) by name.
        ``names``: K names (default :attr:`class_names`, else ``class
        k``)."""
        names = list(names or self.class_names or [
            f'class {k}' for k in range(self.num_classes)])
        weight = self.class_weight.detach().cpu().tolist()
        if counts is not None:
            counts = np.asarray(counts, dtype=np.int64).reshape(-1)
            total = max(int(counts.sum()), 1)
            share = [f' ({100 * c / total:.2f}%)' for c in counts.tolist()]
        else:
            share = [''] * len(weight)
        parts = [f'{n} {w:.3f}{s}' for n, w, s in zip(names, weight, share)
                 if w > 0]
        zero = [n for n, w in zip(names, weight) if w == 0]
        return ', '.join(parts) + (
            f'; weight 0 (no labelled point): {", ".join(zero)}'
            if zero else '')

    def _load_from_state_dict(self, state_dict, prefix, local_metadata,
                              strict, missing_keys, unexpected_keys,
                              error_msgs):
        # Checkpoints of runs without class_weight='auto' (older ones
        # included) have no class_weight entry, and those of auto runs have
        # one that a model with None or a fixed list does not save: both
        # load, the weights being a training matter only (an auto model
        # then counts its classes again when training starts).
        key = prefix + 'class_weight'
        super()._load_from_state_dict(state_dict, prefix, local_metadata,
                                      strict, missing_keys, unexpected_keys,
                                      error_msgs)
        if key in missing_keys:
            missing_keys.remove(key)
        if key in unexpected_keys:
            unexpected_keys.remove(key)
        if self.class_weight_auto and key in state_dict and not any(
                key in m for m in error_msgs):
            self.class_weight_ready = True

    def _loss_class_weight(self) -> Optional[torch.Tensor]:
        if not self.class_weight_ready:
            raise ConfigError(
                "PointSegmentor: class_weight='auto' but the class counts "
                'never reached the model; train with tools/train.py (it '
                "adds ClassWeightHook) or add dict(type='ClassWeightHook') "
                'to custom_hooks')
        return self.class_weight

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
            fresh = [name for name, m in self.named_children()
                     if name != 'backbone' and any(
                         True for _ in m.parameters())]
            # the engine reads checkpoints: it provides the initializer
            # (dbbd.engine.pretrained.PretrainedBackboneInit)
            init = WEIGHT_INITIALIZERS.get('PretrainedBackboneInit')
            if init is None:
                raise ImportError('pretrained= needs dbbd.engine (it reads '
                                  'the checkpoint); it could not be imported')
            init(self.pretrained, fresh)(self.backbone)

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
        """Every loss term over the labelled points of view 1 (float32
        logits), and their accuracy ``acc_seg``."""
        class_weight = self._loss_class_weight()
        logits = self.logits(inputs).float()
        target = inputs['segment']
        out = {term.loss_name: term(logits, target, class_weight)
               for term in self.loss_terms}
        valid = target != self.ignore_index
        correct = (logits.detach().argmax(1) == target) & valid
        out['acc_seg'] = correct.sum().float() / valid.sum().clamp(
            min=1).float()
        return out

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
