"""SelfDistill: point self-distillation with an EMA teacher (Sonata, Wu et
al., CVPR 2025), on any scene backbone.

The strongest known self-supervised baseline for point clouds, built from
the paper's description on this project's parts, so that DBBD is compared
with it on the same backbone, data and budget:

- **views** (the dataset's ``MultiCrop``): ``num_global_views`` global
  crops of a scene and any number of local ones
  (``RandomPointCrop`` of different extents), each with its own
  augmentation; every view records the scene row of each of its points
  (``index``), so the points two views share are found exactly.
- **student and teacher**: the student is the backbone and a prototype
  head trained by gradient; the teacher is a copy whose weights follow
  the student's by an exponential moving average (momentum from
  ``momentum`` to ``final_momentum`` on a cosine over the run) and get no
  gradient.
- **masking on the student only**: the student reads every view with its
  masked points' features replaced by a learned token (``RandomPatchMask``
  in the global views' transforms); the teacher reads the global views
  unmasked.
- **prototype targets with Sinkhorn-Knopp centring**: the teacher's
  scores against the prototypes, balanced over the batch by
  :func:`~dbbd.models.losses.sinkhorn_knopp`, are the targets of the
  student's softmax (cross-entropy), over a seeded sample of matched
  points of each (student view, teacher view) pair. A masked global view
  is also compared with the teacher's unmasked copy of itself, on its
  masked points only (the masked-prediction part).
- **against the geometric shortcut**: masking (the student cannot read a
  masked point's features and must infer them from context), crops
  re-centred per view (``CenterShift`` after the crop: a local view's
  coordinates do not say where in the scene it lies), colour as an input
  feature with colour augmentation (the configs' ``feat_keys``), and the
  loss on coarse features (below).

How the SpUNet is used. Sonata pre-trains an encoder only and reads
per-point features by carrying each stage's features back to the points
("feature up-casting"), because a U-Net decoder trained to produce
fine per-point features is where the low-level geometric cues come back.
The configs do the same with ``SpUNet(readout='upcast')``: the stem's and
every encoder stage's features of the voxels holding a point,
concatenated. The decoder of that SpUNet is frozen and unused, and its
state dict is the full SpUNet's, so ``pretrained=`` loads the student's
weights into the segmentation configs' ``SpUNet`` (decoder as initialised,
trained in fine-tuning; the linear-probe configs read the decoder, so
probe an up-cast SpUNet with ``model.backbone.readout='upcast'``). Any
scene backbone works the same way (``PointNetSceneBackbone``; a
``readout='unet'`` SpUNet).

What is exported. ``pretrained=`` reads the ``backbone.`` keys: the
student's. The teacher (``teacher_backbone.``) is kept for resuming only.
At this project's budgets (hundreds to a few thousand iterations) the
teacher, an average with momentum near 1, still carries a large share of
its initial weights, and its BatchNorm statistics are those of its own
forward passes; the student is what the loss trained.

The EMA update happens at the start of each training forward pass
(``mode='loss'`` with the model in training mode and gradients enabled):
the teacher moves toward the student's current weights, those of the
optimizer's latest step, so each optimizer step is followed by one update
whatever wraps the model (distributed training included; with gradient
accumulation, one per accumulated batch), and the no-gradient passes of
``PreciseBNHook`` and validation update nothing. The
first update copies the student (whatever initialisation or ``load_from``
came before). The number of updates is the ``teacher_step`` buffer, saved
with the checkpoint, so a resumed run continues the momentum and
teacher-temperature schedules exactly.
"""
import copy
import math
import re
from typing import Optional, Union

import torch
from torch import nn

from dbbd.registry import MODELS
from dbbd.structures.sample_order import batch_sample_order
from dbbd.utils.config_check import ConfigError, check_int, check_number

from ..backbones.tree_backbone import build_part, check_width
from ..base import DBBDBaseModel
from ..utils.ema import EMATeacherMixin
from ..utils.mask_token import MaskToken, check_unmasked

__all__ = ['SelfDistill']

_VIEW = re.compile(r'view([0-9]+)')


def _check_fraction(name, value):
    if isinstance(value, bool) or not isinstance(
            value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ConfigError(f'SelfDistill: {name} must be a number in [0, 1], '
                          f'got {value!r}')


@MODELS.register_module()
class SelfDistill(EMATeacherMixin, DBBDBaseModel):
    """Student and EMA teacher on global and local crops, prototype heads
    with Sinkhorn-Knopp centring, masking on the student side (see the
    module docstring for the recipe and the choices).

    Args:
        backbone: a scene backbone config (``forward(coord (P, 3), feat
            (P, C), offset (B + 1,)) -> (P, D)``: ``SpUNet``, with
            ``readout='upcast'`` for the encoder-only recipe, or
            ``PointNetSceneBackbone``); ``in_channels`` defaults to
            ``in_channels``.
        head: prototype head config (``PrototypeHead``; ``in_channels``
            defaults to D).
        loss: ``PrototypeDistillLoss`` config (student temperature,
            Sinkhorn-Knopp iterations).
        in_channels: width C of the raw point features.
        num_global_views: views ``1..G`` of the batch are the global ones
            (the teacher's, unmasked); the others are local (the student's
            only). The pipeline's ``MultiCrop`` puts its global group
            first.
        num_samples: matched points sampled per (student view, teacher
            view) pair and batch (a seeded draw: the batch's
            ``sample_order``).
        teacher_temp: temperature of the teacher's targets after the
            warm-up.
        warmup_teacher_temp: temperature at the first update, raised
            linearly to ``teacher_temp`` over ``warmup_teacher_temp_iters``
            updates (0: no warm-up).
        warmup_teacher_temp_iters: length of that warm-up, in updates.
        momentum: EMA momentum at the first update after the copy.
        final_momentum: momentum at the end of the run (cosine from
            ``momentum``).
        momentum_iters: updates over which the cosine runs; None: the
            run's ``max_iters`` (mmengine's message hub; without a runner,
            the momentum stays ``momentum``).
        mask_token: learn the token that replaces the masked points'
            features of the student (needed when the pipeline masks).
        return_embeddings: ``predict`` also returns the compared
            embeddings (the collapse watch switches it on).

    Attributes:
        backbone, student_head: the student (``backbone.`` is what
            ``pretrained=`` loads).
        teacher_backbone, teacher_head: the EMA copies (no gradient).
        teacher_step: long buffer, the number of EMA updates done.

    ``forward(inputs, data_samples=None, mode)``: ``'loss'`` ->
    ``dict(loss_distill, teacher_momentum, teacher_temp)`` (the last two
    logged, not summed); ``'predict'`` -> one dict per scene of view 1
    (``scene_id``, ``point_feat (N_i, D)`` of the student on view 1
    unmasked, ``segment`` of those points, and with a second view
    ``losses``), as ``SceneContrast`` gives, so the same metrics apply;
    ``'tensor'`` -> ``dict(point_feat (P_1, D), offset)`` of view 1.
    """

    def __init__(self, backbone: dict, head: Optional[dict] = None,
                 loss: Optional[dict] = None, in_channels: int = 3,
                 num_global_views: int = 2, num_samples: int = 4096,
                 teacher_temp: float = 0.07,
                 warmup_teacher_temp: float = 0.04,
                 warmup_teacher_temp_iters: int = 0,
                 momentum: float = 0.994, final_momentum: float = 1.0,
                 momentum_iters: Optional[int] = None,
                 mask_token: bool = True, return_embeddings: bool = False,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        check_int('SelfDistill', 'num_global_views', num_global_views)
        check_int('SelfDistill', 'num_samples', num_samples)
        check_number('SelfDistill', 'teacher_temp', teacher_temp)
        check_number('SelfDistill', 'warmup_teacher_temp',
                     warmup_teacher_temp)
        check_int('SelfDistill', 'warmup_teacher_temp_iters',
                  warmup_teacher_temp_iters, minimum=0)
        _check_fraction('momentum', momentum)
        _check_fraction('final_momentum', final_momentum)
        if momentum_iters is not None:
            check_int('SelfDistill', 'momentum_iters', momentum_iters)
        self.backbone = build_part(backbone, in_channels=in_channels)
        check_width('backbone', 'in_channels', self.backbone.in_channels,
                    in_channels)
        d = self.backbone.out_channels
        self.student_head = build_part(head or dict(type='PrototypeHead'),
                                       in_channels=d)
        check_width('head', 'in_channels', self.student_head.in_channels, d)
        self.criterion = build_part(loss or dict(
            type='PrototypeDistillLoss'))
        self.mask_token = MaskToken(in_channels) if mask_token else None
        self.teacher_backbone = copy.deepcopy(self.backbone)
        self.teacher_head = copy.deepcopy(self.student_head)
        for part in (self.teacher_backbone, self.teacher_head):
            part.requires_grad_(False)
        self._init_teacher_step()
        self.in_channels = in_channels
        self.num_global_views = num_global_views
        self.num_samples = num_samples
        self.teacher_temp = float(teacher_temp)
        self.warmup_teacher_temp = float(warmup_teacher_temp)
        self.warmup_teacher_temp_iters = warmup_teacher_temp_iters
        self.momentum = float(momentum)
        self.final_momentum = float(final_momentum)
        self.momentum_iters = momentum_iters
        self.return_embeddings = return_embeddings

    @property
    def out_channels(self) -> int:
        return self.backbone.out_channels

    # -- the teacher -------------------------------------------------------

    def _horizon(self) -> Optional[int]:
        if self.momentum_iters is not None:
            return self.momentum_iters
        from mmengine.logging import MessageHub
        return MessageHub.get_current_instance().get_info('max_iters')

    def momentum_at(self, step: int) -> float:
        """EMA momentum of update ``step`` (1-based; update 0 is the copy):
        ``final - (final - momentum) * (1 + cos(pi * t)) / 2``, ``t =
        min(step / horizon, 1)`` (``momentum`` without a horizon)."""
        horizon = self._horizon()
        t = min(step / horizon, 1.0) if horizon else 0.0
        return self.final_momentum - (self.final_momentum - self.momentum) * (
            1.0 + math.cos(math.pi * t)) / 2.0

    def teacher_temp_at(self, step: int) -> float:
        """Teacher temperature at update ``step`` (linear warm-up)."""
        warm = self.warmup_teacher_temp_iters
        if warm and step < warm:
            return self.warmup_teacher_temp + (
                self.teacher_temp - self.warmup_teacher_temp) * step / warm
        return self.teacher_temp

    def _teacher_pairs(self):
        """(teacher, student) module pairs the EMA runs over."""
        return ((self.teacher_backbone, self.backbone),
                (self.teacher_head, self.student_head))

    def _teacher_momentum(self, step: int) -> float:
        return self.momentum_at(step)

    # -- views and matching ------------------------------------------------

    def _views(self, inputs):
        """The batch's views in order, at least ``num_global_views``."""
        names = sorted((k for k in inputs if _VIEW.fullmatch(k)),
                       key=lambda k: int(k[4:]))
        if len(names) < max(self.num_global_views, 2):
            raise KeyError(
                f'SelfDistill: the batch has {len(names)} view(s) '
                f'({", ".join(names) or "none"}) but needs at least '
                f'{max(self.num_global_views, 2)} (num_global_views='
                f'{self.num_global_views} global ones, then local ones); '
                "make them in the pipeline with dict(type='MultiCrop', "
                'groups=[...]) or MultiView(num_views=2)')
        return [inputs[k] for k in names]

    def _features(self, backbone, views, masked):
        """One backbone call on the views stacked as separate scenes.

        Returns:
            (sum of P_v, D): the views' features, view after view (rows
            of view ``v`` start at ``sum(P_u for u < v)``).
        """
        feats = []
        for view in views:
            if masked and self.mask_token is not None:
                view = self.mask_token(view)
            elif masked:
                check_unmasked(view, 'SelfDistill')
            feats.append(view['feat'])
        counts = torch.cat([v['offset'].diff() for v in views])
        offset = torch.cat([counts.new_zeros(1), counts.cumsum(0)])
        return backbone(torch.cat([v['coord'] for v in views]),
                        torch.cat(feats), offset)

    @staticmethod
    def _scene_rows(view, num_points):
        """``(P,)`` long: each scene point's row in ``view``, -1 where the
        view lacks it."""
        index = view.get('index')
        n = view['coord'].shape[0]
        device = view['coord'].device
        if index is None:
            if n != num_points:
                raise ValueError(
                    f'SelfDistill: a view of {n} points has no index but the '
                    f'batch has {num_points} scene points; crop views with '
                    'RandomPointCrop, which records index')
            return torch.arange(num_points, device=device)
        rows = torch.full((num_points, ), -1, dtype=torch.long,
                          device=device)
        return rows.index_put_((index, ), torch.arange(n, device=device))

    @staticmethod
    def _scene_mask(view, num_points):
        """``(P,)`` bool: the scene points masked in ``view``."""
        index = view.get('index')
        mask = view['mask']
        if index is None:
            return mask
        out = torch.zeros(num_points, dtype=torch.bool, device=mask.device)
        return out.index_put_((index, ), mask)

    def _sample_pairs(self, inputs, views):
        """Sampled matched points of every (student view, teacher view)
        pair.

        Pairs: every student view with every global view but itself, and
        a masked global view with itself (its masked points only). For
        each pair the ``k = min(num_samples, P)`` scene points first in
        the batch's ``sample_order`` among those both views hold are
        taken (a ``topk``: no host synchronisation; when fewer are shared,
        the rest of the ``k`` have weight 0).

        Returns:
            pairs: list of ``(student view, teacher view)`` numbers.
            student_rows, teacher_rows: ``(G, k)`` rows of the stacked
                student / teacher features.
            weight: ``(G, k)`` bool, which samples count.
        """
        num_points = int(inputs['segment'].shape[0]) if torch.is_tensor(
            inputs.get('segment')) else int(inputs['offset'][-1])
        order = batch_sample_order(inputs)
        rank = torch.empty_like(order).index_put_(
            (order, ), torch.arange(num_points, device=order.device))
        rows = [self._scene_rows(v, num_points) for v in views]
        start = [0]
        for v in views:
            start.append(start[-1] + v['coord'].shape[0])
        pairs, valid = [], []
        for t in range(self.num_global_views):
            for s in range(len(views)):
                if s == t and views[s].get('mask') is None:
                    continue
                both = (rows[s] >= 0) & (rows[t] >= 0)
                if s == t:
                    both = both & self._scene_mask(views[s], num_points)
                pairs.append((s, t))
                valid.append(both)
        valid = torch.stack(valid)
        k = min(self.num_samples, num_points)
        # shared points first, in sample order; the rest after them
        score = rank.unsqueeze(0) + num_points * (~valid).long()
        pick = torch.topk(score, k, dim=1, largest=False).indices
        weight = valid.gather(1, pick)
        rows_all = torch.stack(rows)
        s_idx = torch.tensor([s for s, _ in pairs], device=pick.device)
        t_idx = torch.tensor([t for _, t in pairs], device=pick.device)
        starts = torch.tensor(start, device=pick.device)
        student_rows = rows_all[s_idx].gather(1, pick).clamp_min(0) + \
            starts[s_idx].unsqueeze(1)
        teacher_rows = rows_all[t_idx].gather(1, pick).clamp_min(0) + \
            starts[t_idx].unsqueeze(1)
        return pairs, student_rows, teacher_rows, weight

    # -- the loss ------------------------------------------------------------

    def _losses(self, inputs, embeddings=None):
        views = self._views(inputs)
        student = self._features(self.backbone, views, masked=True)
        with torch.no_grad():
            teacher = self._features(
                self.teacher_backbone, views[:self.num_global_views],
                masked=False)
        pairs, s_rows, t_rows, weight = self._sample_pairs(inputs, views)
        num_pairs, k = weight.shape
        step = max(self._step - 1, 0)  # the update this step made
        temp = self.teacher_temp_at(step)
        with torch.no_grad():
            t_emb, t_scores = self.teacher_head(
                teacher.index_select(0, t_rows.view(-1)))
            targets = self.criterion.targets(
                t_scores.view(num_pairs, k, -1), weight, temp)
        s_emb, s_scores = self.student_head(
            student.index_select(0, s_rows.view(-1)))
        loss = self.criterion(s_scores.view(num_pairs, k, -1), targets,
                              weight)
        if embeddings is not None:
            keep = weight.view(-1)
            embeddings['point'] = (s_emb.detach()[keep], t_emb[keep])
        losses = dict(loss_distill=loss,
                      teacher_momentum=loss.new_tensor(self.momentum_at(step)
                                                       if step else 0.0),
                      teacher_temp=loss.new_tensor(temp))
        return losses, student[:views[0]['coord'].shape[0]], views

    def loss(self, inputs: dict, data_samples: Optional[list] = None):
        """One EMA update of the teacher (in a training step, see the
        module docstring), then the distillation loss."""
        if self.training and torch.is_grad_enabled():
            self.update_teacher()
        return self._losses(inputs)[0]

    def extract_feat(self, view: dict) -> torch.Tensor:
        """The student's features of one view, unmasked: ``(P_v, D)``."""
        return self.backbone(view['coord'], view['feat'], view['offset'])

    def tensor(self, inputs: dict) -> dict:
        """``mode='tensor'``: ``dict(point_feat (P_1, D), offset)`` of the
        student on view 1, unmasked."""
        view = inputs['view1']
        return dict(point_feat=self.extract_feat(view),
                    offset=view['offset'])

    def predict(self, inputs: dict, data_samples: Optional[list] = None):
        """One dict per scene, for metrics (see the class docstring)."""
        view = inputs['view1']
        shared = {}
        if 'view2' in inputs:
            embeddings = {} if self.return_embeddings else None
            parts, feat, _ = self._losses(inputs, embeddings)
            losses = dict(loss=sum(v for k, v in parts.items()
                                   if 'loss' in k))
            losses.update(parts)
            shared['losses'] = {k: v.detach() for k, v in losses.items()
                                if 'loss' in k}
            if embeddings is not None:
                shared['embeddings'] = embeddings
            if view.get('mask') is not None:
                feat = self.extract_feat(view)
        else:
            feat = self.extract_feat(view)
        segment = inputs.get('segment')
        if segment is None:
            segment = torch.full((int(inputs['offset'][-1]), ), -1,
                                 dtype=torch.long, device=feat.device)
        if view.get('index') is not None:
            segment = segment.index_select(0, view['index'])
            sizes = view['offset'].diff().tolist()
        else:
            sizes = inputs.get('num_points') or torch.diff(
                inputs['offset']).tolist()
        return self.scene_results(feat, segment, sizes, data_samples,
                                  shared)
