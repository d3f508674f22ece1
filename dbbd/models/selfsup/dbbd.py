"""DBBD, the self-supervisor: a tree backbone read both ways, projection
heads and the contrastive loss (method sections 3 and 4).

As mmpretrain's ``BaseSelfSupervisor``: the backbone turns points into
features (:class:`~dbbd.models.backbones.DBBDTreeBackbone`), the heads map
them into the contrastive space and the loss compares the two readings.
"""
import contextlib
import copy
from typing import Optional, Union

import torch
from torch import nn

from dbbd.registry import MODELS
from dbbd.utils.config_check import ConfigError

from ..backbones.tree_backbone import build_part, check_width
from ..base import DBBDBaseModel
from ..losses.point_loss import batch_sample_order
from ..utils.ema import EMATeacherMixin
from ..utils import tree_index_of

__all__ = ['DBBD']


def _check_view2(inputs, mode):
    if 'view2' not in inputs:
        raise KeyError(f"mode='{mode}' needs inputs['view2'] (a dataset with "
                       'dual_view=True)')


@MODELS.register_module()
class DBBD(EMATeacherMixin, DBBDBaseModel):
    """Dual-branch bi-directional pre-training on region trees.

    Args:
        backbone: the tree backbone config (``DBBDTreeBackbone``): reads
            view 1 top-down (G2L) and view 2 bottom-up (L2G). Its
            ``out_channels`` (D) is the width of every feature.
        region_head: projection head of region features (one for all
            levels); ``in_channels`` defaults to D.
        point_head: projection head of point features; likewise.
        loss: loss config (``DBBDLoss``).
        reconstruct: also reconstruct the input features (colour,
            normals, intensity) from the per-point features of each
            reading by a linear head (MSE), adding ``loss_recon``. The
            features are the scene backbone's when the tree has one (what a
            segmentation config fine-tunes), the tree's point features
            otherwise. ``False`` (default): no term. ``True`` or
            ``'masked'``: the points a masking transform hid (MSC's
            reconstruction term; needs ``backbone.mask_token=True`` and
            ``RandomPatchMask`` in the pipeline, and unmasked batches give
            no term). ``'all'``: every point (an auto-encoding term: the
            features keep a linear copy of the input's appearance, which
            the contrastive losses alone let them drop). With an EMA
            teacher only the student's reading (view 1) is reconstructed:
            the teacher gets no gradient.
        recon_weight: weight of that loss.
        ema_momentum: None (default, the method as defined): one network
            reads both views. A number in [0, 1): an EMA teacher reads
            view 2 (L2G) instead, MoCo/BYOL style: a copy of the backbone
            and of both projection heads whose weights follow the
            student's, ``teacher = m * teacher + (1 - m) * student``
            once per training step (at the start of each training
            forward; the first step copies the student), with no
            gradient; the contrastive losses compare the student's G2L
            with the teacher's L2G. ``teacher_step`` (a buffer, saved
            with the checkpoint) counts the updates, so a resumed run
            goes on from the same teacher. The student's ``backbone.``
            is what ``pretrained=`` and the encoder export read.
        return_embeddings: ``predict`` also returns the projected
            embeddings the loss compared (for the collapse watch, which
            switches it on).
        data_preprocessor: default ``dict(type='DBBDDataPreprocessor')``.
        init_cfg: mmengine weight init config.

    ``forward(inputs, data_samples=None, mode='tensor')`` takes the
    ``inputs`` dict of ``docs/data_format.md``:

    - ``'loss'``: both views -> the dict of :class:`DBBDLoss`.
    - ``'predict'``: a list with one dict per scene: ``scene_id``,
      ``point_feat`` (N_i, D) G2L, ``segment`` (N_i,), and when ``view2`` is
      present ``point_feat_l2g`` (N_i, D) and ``losses``: the loss dict of
      the whole batch plus its total ``loss`` (the same in every scene of
      the batch, detached). With ``return_embeddings``, also
      ``embeddings``: ``dict(region=(g2l (R, E), l2g (R, E)),
      point=(g2l (S, E), l2g (S, E)))`` of the whole batch (regions of all
      levels, the point loss's sampled points), detached.
    - ``'tensor'``: G2L features of view 1 only (see :meth:`extract_feat`).
    """

    def __init__(self, backbone: dict, region_head: dict, point_head: dict,
                 loss: dict, reconstruct: Union[bool, str] = False,
                 recon_weight: float = 1.0, return_embeddings: bool = False,
                 ema_momentum: Optional[float] = None,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.backbone = build_part(backbone)
        d = self.backbone.out_channels
        self.region_head = build_part(region_head, in_channels=d)
        check_width('region_head', 'in_channels', self.region_head.in_channels,
                    d)
        self.point_head = build_part(point_head, in_channels=d)
        check_width('point_head', 'in_channels', self.point_head.in_channels,
                    d)
        self.criterion = build_part(loss)
        self.recon_head = None
        if reconstruct not in (False, True, 'masked', 'all'):
            raise ConfigError(f"DBBD: reconstruct must be False, True, "
                              f"'masked' or 'all', got {reconstruct!r}")
        self.recon_points = 'masked' if reconstruct is True else reconstruct
        if reconstruct:
            if self.recon_points == 'masked' and \
                    self.backbone.mask_token is None:
                raise ValueError('DBBD: reconstruct=True reconstructs masked '
                                 'points; set backbone.mask_token=True and '
                                 'mask in the pipeline (RandomPatchMask)')
            scene = self.backbone.scene_backbone
            width = d if scene is None else scene.out_channels
            self.recon_head = nn.Linear(width, self.backbone.in_channels)
        self.recon_weight = recon_weight
        self.return_embeddings = return_embeddings
        self.ema_momentum = None
        if ema_momentum is not None:
            if isinstance(ema_momentum, bool) or not isinstance(
                    ema_momentum, (int, float)) or not \
                    0.0 <= ema_momentum < 1.0:
                raise ConfigError(f'DBBD: ema_momentum must be None or a '
                                  f'number in [0, 1), got {ema_momentum!r}')
            self.ema_momentum = float(ema_momentum)
            self.teacher_backbone = copy.deepcopy(self.backbone)
            self.teacher_region_head = copy.deepcopy(self.region_head)
            self.teacher_point_head = copy.deepcopy(self.point_head)
            for part in self._teacher_pairs():
                part[0].requires_grad_(False)
            self._init_teacher_step()

    @property
    def out_channels(self) -> int:
        return self.backbone.out_channels

    # -- the EMA teacher (ema_momentum) ----------------------------------

    def _teacher_pairs(self):
        return ((self.teacher_backbone, self.backbone),
                (self.teacher_region_head, self.region_head),
                (self.teacher_point_head, self.point_head))

    def _teacher_momentum(self, step: int) -> float:
        return self.ema_momentum

    def _key_parts(self):
        """(backbone, region head, point head) that read view 2."""
        if self.ema_momentum is None:
            return self.backbone, self.region_head, self.point_head
        return (self.teacher_backbone, self.teacher_region_head,
                self.teacher_point_head)

    def tensor(self, inputs: dict) -> dict:
        """``mode='tensor'``: :meth:`extract_feat`."""
        return self.extract_feat(inputs)

    def _readings(self, inputs):
        tree = tree_index_of(inputs)
        g2l = self.backbone.g2l(inputs['view1'], tree)
        teacher = self.ema_momentum is not None
        with torch.no_grad() if teacher else contextlib.nullcontext():
            l2g = self._key_parts()[0].l2g(inputs['view2'], tree)
        return g2l, l2g

    def _recon(self, reading, view):
        feat = reading.get('scene_feat', reading['point_feat'])
        err = (self.recon_head(feat) - view['feat']).pow(2).mean(1)
        if self.recon_points == 'all':
            return err.mean()
        mask = view['mask'].to(err.dtype)
        return (err * mask).sum() / mask.sum().clamp(min=1)

    def _recon_losses(self, out, g2l, l2g, inputs):
        """``out`` with ``loss_recon`` when the model reconstructs (every
        point, or the masked ones when the views are masked)."""
        if self.recon_head is None:
            return out
        v1, v2 = inputs['view1'], inputs['view2']
        if self.recon_points == 'masked' and not ('mask' in v1 and
                                                  'mask' in v2):
            return out
        if self.ema_momentum is not None:
            # the teacher's reading has no gradient: the student's alone
            out['loss_recon'] = self.recon_weight * self._recon(g2l, v1)
        else:
            out['loss_recon'] = self.recon_weight * 0.5 * (
                self._recon(g2l, v1) + self._recon(l2g, v2))
        return out

    def _losses(self, g2l, l2g, sample_order, embeddings=None):
        """The loss dict; ``embeddings`` (a dict) receives what was
        compared."""
        sizes = [f.shape[0] for f in g2l['region_feat']]
        _, key_region_head, key_point_head = self._key_parts()
        q = self.region_head(torch.cat(g2l['region_feat']))
        k = key_region_head(torch.cat(l2g['region_feat']))
        point_head = self.point_head
        if embeddings is not None:
            embeddings['region'] = (q.detach(), k.detach())
            points = []

            def capture(head):
                def run(x):
                    z = head(x)
                    points.append(z.detach())
                    return z
                return run
            point_head = capture(self.point_head)
            key_point_head = capture(key_point_head)
        out = self.criterion(list(q.split(sizes)), list(k.split(sizes)),
                             g2l['point_feat'], l2g['point_feat'],
                             sample_order, point_head, key_point_head)
        if embeddings is not None:
            embeddings['point'] = tuple(points)
        return out

    def loss(self, inputs: dict, data_samples: Optional[list] = None):
        """Both readings and the loss dict (needs ``view2``)."""
        _check_view2(inputs, 'loss')
        if self.ema_momentum is not None and self.training and \
                torch.is_grad_enabled():
            self.update_teacher()
        g2l, l2g = self._readings(inputs)
        return self._recon_losses(
            self._losses(g2l, l2g, batch_sample_order(inputs)), g2l, l2g,
            inputs)

    def predict(self, inputs: dict, data_samples: Optional[list] = None):
        """One dict per scene, for metrics (see the class docstring)."""
        tree = tree_index_of(inputs)
        g2l = self.backbone.g2l(inputs['view1'], tree)
        feats = dict(point_feat=g2l['point_feat'])
        shared = {}
        if 'view2' in inputs:
            l2g = self._key_parts()[0].l2g(inputs['view2'], tree)
            feats['point_feat_l2g'] = l2g['point_feat']
            embeddings = {} if self.return_embeddings else None
            parts = self._recon_losses(
                self._losses(g2l, l2g, batch_sample_order(inputs),
                             embeddings), g2l, l2g, inputs)
            losses = dict(loss=sum(v for k, v in parts.items()
                                   if 'loss' in k))
            losses.update(parts)
            shared['losses'] = {k: v.detach() for k, v in losses.items()}
            if embeddings is not None:
                shared['embeddings'] = embeddings
        segment = inputs.get('segment')
        if segment is None:
            segment = torch.full((tree.num_points, ), -1, dtype=torch.long,
                                 device=inputs['offset'].device)
        feats['segment'] = segment
        sizes = inputs.get('num_points') or torch.diff(
            inputs['offset']).tolist()
        split = {k: v.detach().split(list(sizes)) for k, v in feats.items()}
        results = []
        for i in range(len(sizes)):
            sample = data_samples[i] if data_samples else {}
            res = dict(scene_id=sample.get('scene_id', str(i)))
            res.update({k: v[i] for k, v in split.items()})
            res.update(shared)
            results.append(res)
        return results

    def extract_feat(self, inputs: dict) -> dict:
        """G2L features of view 1 (view 2 is not needed).

        Returns:
            dict: ``point_feat (P, D)``, ``region_feat`` list over levels of
            ``(R_l, D)``, and the batch's ``offset (B + 1,)`` and
            ``region_offset (L, B + 1)`` to split them per scene.
        """
        out = self.backbone.g2l(inputs['view1'], tree_index_of(inputs))
        out.update(offset=inputs['offset'],
                   region_offset=inputs['region_offset'])
        return out
