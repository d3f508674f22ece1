"""SceneContrast: point-level contrast of two views of a scene, the MSC /
PointContrast family, on any scene backbone.

The baseline DBBD is compared with: the same scene backbone (SpUNet, or
PointNet as the degenerate case), the same dual-view data, trained by
matching points instead of reading a region tree. The two views of a
scene share their points (the augmentations move them, never drop or
reorder them), so every point's match in the other view is the point of
the same index.

- Optionally a fraction of voxel-sized patches of each view is masked
  (``RandomPatchMask`` in the view pipeline; MSC masks 40%): their input
  features become a learned token, so the match has to be inferred from
  the context.
- A seeded subsample of the matched points (the head of the batch's
  ``sample_order``) is projected and contrasted with InfoNCE: row ``i`` of
  view 1 against every sampled row of view 2, its own match positive.
- Optionally the masked points' input features (normals, colours) are
  reconstructed from their output features (MSE, on the masked points of
  both views).
"""
from typing import Optional, Union

import torch
from torch import nn

from dbbd.registry import MODELS
from dbbd.structures.sample_order import batch_sample_order

from ..backbones.tree_backbone import build_part, check_width
from ..base import DBBDBaseModel
from ..utils.mask_token import MaskToken, check_unmasked

__all__ = ['SceneContrast']


@MODELS.register_module()
class SceneContrast(DBBDBaseModel):
    """Matched-point InfoNCE between two views on a scene backbone.

    Args:
        backbone: a scene backbone config (``forward(coord, feat, offset)
            -> (P, D)``: ``SpUNet``, ``PointNetSceneBackbone``);
            ``in_channels`` defaults to ``in_channels``.
        head: projection head config (``ProjectionHead``; ``in_channels``
            defaults to D).
        in_channels: width of the raw point features.
        num_samples: matched points contrasted per batch (MSC: 4096).
        temperature: InfoNCE temperature (PointContrast and MSC: 0.4).
        mask_token: learn the token that replaces masked points' features
            (needed when the pipeline masks).
        reconstruct: also reconstruct the masked points' input features
            (a linear head, MSE), weighted by ``recon_weight``.
        recon_weight: weight of that loss.
        return_embeddings: ``predict`` also returns the compared
            embeddings (the collapse watch switches it on).

    ``forward(inputs, data_samples=None, mode)``: ``'loss'`` ->
    ``dict(loss_contrast[, loss_recon])``; ``'predict'`` -> one dict per
    scene (``scene_id``, ``point_feat`` of view 1, ``segment``, and with
    view 2 ``losses``), as ``DBBD`` gives, so the same metrics apply;
    ``'tensor'`` -> ``dict(point_feat (P, D), offset)``.
    """

    def __init__(self, backbone: dict, head: Optional[dict] = None,
                 in_channels: int = 3, num_samples: int = 4096,
                 temperature: float = 0.4, mask_token: bool = False,
                 reconstruct: bool = False, recon_weight: float = 1.0,
                 return_embeddings: bool = False,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.backbone = build_part(backbone, in_channels=in_channels)
        check_width('backbone', 'in_channels', self.backbone.in_channels,
                    in_channels)
        d = self.backbone.out_channels
        self.head = build_part(head or dict(type='ProjectionHead',
                                            out_channels=128),
                               in_channels=d)
        self.point_loss = MODELS.build(dict(type='PointLoss',
                                            num_samples=num_samples,
                                            temperature=temperature))
        self.mask_token = MaskToken(in_channels) if mask_token else None
        if reconstruct and not mask_token:
            raise ValueError('SceneContrast: reconstruct=True reconstructs '
                             'masked points; set mask_token=True and mask '
                             'in the pipeline (RandomPatchMask)')
        self.recon_head = nn.Linear(d, in_channels) if reconstruct else None
        self.recon_weight = recon_weight
        self.return_embeddings = return_embeddings

    @property
    def out_channels(self) -> int:
        return self.backbone.out_channels

    def tensor(self, inputs: dict) -> dict:
        """``mode='tensor'``: ``dict(point_feat (P, D), offset)``."""
        return dict(point_feat=self.extract_feat(inputs['view1']),
                    offset=inputs['offset'])

    def extract_feat(self, view: dict) -> torch.Tensor:
        """Per-point features of one view (masked points get the token)."""
        if self.mask_token is not None:
            view = self.mask_token(view)
        else:
            check_unmasked(view, 'SceneContrast')
        return self.backbone(view['coord'], view['feat'], view['offset'])

    def _recon(self, feat, view):
        err = (self.recon_head(feat) - view['feat']).pow(2).mean(1)
        mask = view['mask'].to(err.dtype)
        return (err * mask).sum() / mask.sum().clamp(min=1)

    def _losses(self, inputs, embeddings=None):
        v1, v2 = inputs['view1'], inputs['view2']
        f1, f2 = self.extract_feat(v1), self.extract_feat(v2)
        head = self.head
        if embeddings is not None:
            points = []

            def head(x):
                z = self.head(x)
                points.append(z.detach())
                return z
        losses = dict(loss_contrast=self.point_loss(
            f1, f2, batch_sample_order(inputs), head))
        if embeddings is not None:
            embeddings['point'] = tuple(points)
        if self.recon_head is not None and 'mask' in v1:
            losses['loss_recon'] = self.recon_weight * 0.5 * (
                self._recon(f1, v1) + self._recon(f2, v2))
        return losses, f1

    def loss(self, inputs: dict, data_samples: Optional[list] = None):
        if 'view2' not in inputs:
            raise KeyError("mode='loss' needs inputs['view2'] "
                           '(MultiView(num_views=2))')
        return self._losses(inputs)[0]

    def predict(self, inputs: dict, data_samples: Optional[list] = None):
        shared = {}
        if 'view2' in inputs:
            embeddings = {} if self.return_embeddings else None
            parts, feat = self._losses(inputs, embeddings)
            losses = dict(loss=sum(parts.values()))
            losses.update(parts)
            shared['losses'] = {k: v.detach() for k, v in losses.items()}
            if embeddings is not None:
                shared['embeddings'] = embeddings
        else:
            feat = self.extract_feat(inputs['view1'])
        segment = inputs.get('segment')
        if segment is None:
            segment = torch.full((feat.shape[0], ), -1, dtype=torch.long,
                                 device=feat.device)
        sizes = inputs.get('num_points') or torch.diff(
            inputs['offset']).tolist()
        return self.scene_results(feat, segment, sizes, data_samples,
                                  shared)
