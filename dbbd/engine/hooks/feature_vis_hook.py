"""``FeatureVisHook``: a picture of one validation scene's point features
in TensorBoard."""
from typing import Optional

from mmengine.hooks import Hook

from dbbd.evaluation.feature_vis import feature_image
from dbbd.registry import HOOKS

__all__ = ['FeatureVisHook']


@HOOKS.register_module()
class FeatureVisHook(Hook):
    """Every ``interval`` validations, draw one validation scene from the
    top, its points coloured by the first three principal components of
    their point features, and log it with ``runner.visualizer.add_image``
    (TensorBoard's IMAGES tab; ``vis_data/vis_image/<name>_<epoch>.png`` of
    ``LocalVisBackend``), at step = epoch.

    No extra forward pass: the features are the ``mode='predict'`` output
    of the validation itself (``outputs`` of ``after_val_iter``), the
    coordinates those of view 1 of the batch (validation augmentation
    included).

    Args:
        interval: draw at validations ``1, 1 + interval, ...``.
        scene_id: which scene (None: the first of the first batch).
        feat_key: entry of the predict output (``'point_feat'``: G2L;
            ``'point_feat_l2g'``).
        name: image tag (no ``/``: ``LocalVisBackend`` writes it as a file
            name).
        image_size: pixels along the scene's longer side.
        point_radius: a point covers ``(2r + 1)^2`` pixels (None: from
            the point density).
        max_points: draw at most that many points (None: all).
    """
    priority = 'NORMAL'

    def __init__(self, interval: int = 1, scene_id: Optional[str] = None,
                 feat_key: str = 'point_feat', name: str = 'val_feature_pca',
                 image_size: int = 512,
                 point_radius: Optional[int] = None,
                 max_points: Optional[int] = None):
        if interval < 1:
            raise ValueError('FeatureVisHook: interval must be >= 1')
        self.interval = interval
        self.scene_id = scene_id
        self.feat_key = feat_key
        self.name = name
        self.image_size = image_size
        self.point_radius = point_radius
        self.max_points = max_points
        self._count = 0
        self._active = False
        self._scene = None
        self._training = False

    def before_train(self, runner) -> None:
        self._training = True

    def after_train(self, runner) -> None:
        self._training = False

    def before_val_epoch(self, runner) -> None:
        self._count += 1
        self._active = (self._count - 1) % self.interval == 0
        self._scene = None

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs=None) -> None:
        if not self._active or self._scene is not None or not outputs:
            return
        inputs = data_batch.get('inputs', {}) if isinstance(
            data_batch, dict) else {}
        coord = (inputs.get('view1') or {}).get('coord')
        if coord is None:
            return
        start = 0
        for out in outputs:
            feat = out.get(self.feat_key)
            if feat is None:
                return
            n = feat.shape[0]
            if self.scene_id is None or str(out.get('scene_id')) == str(
                    self.scene_id):
                self._scene = (str(out.get('scene_id')),
                               coord[start:start + n].detach().cpu(),
                               feat.detach().cpu())
                return
            start += n

    def after_val_epoch(self, runner, metrics=None) -> None:
        if not self._active or self._scene is None:
            return
        scene_id, coord, feat = self._scene
        self._scene = None
        image = feature_image(coord, feat, size=self.image_size,
                              point_radius=self.point_radius,
                              max_points=self.max_points)
        # outside training (runner.val()) runner.epoch would build the train
        # loop, data loader included
        step = runner.epoch if self._training else 0
        runner.visualizer.add_image(self.name, image, step=step)
        runner.logger.info(f'FeatureVisHook: logged {self.name} of scene '
                           f'{scene_id} ({image.shape[1]}x{image.shape[0]}) '
                           f'at step {step}')
