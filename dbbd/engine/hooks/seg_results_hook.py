"""``SegResultsHook``: the predictions of a segmentation test, on disk."""
import os
import os.path as osp
from typing import Optional

import numpy as np
from mmengine.hooks import Hook

from dbbd.registry import HOOKS

__all__ = ['SegResultsHook']


@HOOKS.register_module()
class SegResultsHook(Hook):
    """Write what a segmentation test predicted, per scene.

    - ``out_dir``: ``<scene_id>.npy``, the predicted class id of every
      point of the prepared scene, in its point order (int16, ``np.save``,
      no pickle);
    - ``show_dir``: ``<scene_id>.png``, a top view of the scene's
      labelled points, ground truth on the left and prediction on the
      right, in the ScanNet colour palette.

    Reads ``PointSegmentor``'s ``predict`` output (``scene_id``, ``pred``,
    ``segment`` at full resolution); the points drawn are the prepared
    scene's own (``coord.npy``), found through the test dataset. Files are
    written atomically. ``tools/test.py --out DIR --show-dir DIR`` adds it.

    Args:
        out_dir, show_dir: folders (created); None: not written.
        size: pixels along the longer side of each half of a picture.
    """

    priority = 'LOW'

    def __init__(self, out_dir: Optional[str] = None,
                 show_dir: Optional[str] = None, size: int = 512):
        self.out_dir, self.show_dir, self.size = out_dir, show_dir, size
        self._scene_dirs = {}

    def before_test(self, runner) -> None:
        for folder in (self.out_dir, self.show_dir):
            if folder:
                os.makedirs(folder, exist_ok=True)
        dataset = runner.test_dataloader.dataset
        if not getattr(dataset, '_fully_initialized', True):
            dataset.full_init()
        self._scene_dirs = {
            d['scene_id']: d.get('scene_dir')
            for d in getattr(dataset, 'data_list', [])
        }

    def after_test_iter(self, runner, batch_idx, data_batch=None,
                        outputs=None) -> None:
        from dbbd.engine.checkpoint import atomic_npy_save
        for out in outputs or []:
            if 'pred' not in out:
                continue  # not a segmentation model's output
            sid = str(out['scene_id'])
            pred = out['pred'].detach().cpu().numpy().astype(np.int16)
            if self.out_dir:
                atomic_npy_save(osp.join(self.out_dir, f'{sid}.npy'), pred)
            if self.show_dir:
                self._show(runner, sid, pred, out['segment'])

    def _show(self, runner, sid, pred, segment):
        from dbbd.datasets.scene_io import load_scene
        from dbbd.evaluation.feature_vis import save_png
        from dbbd.evaluation.seg_vis import seg_comparison_image
        scene_dir = self._scene_dirs.get(sid)
        if scene_dir is None:
            runner.logger.warning(f'SegResultsHook: scene {sid} is not in '
                                  'the test dataset; no picture')
            return
        coord = np.asarray(load_scene(scene_dir, mmap=True,
                                      check=False)['coord'])
        if coord.shape[0] != pred.shape[0]:
            runner.logger.warning(
                f'SegResultsHook: {sid} has {coord.shape[0]} points but '
                f'{pred.shape[0]} predictions; no picture')
            return
        image = seg_comparison_image(
            coord, segment.detach().cpu().numpy(), pred, size=self.size)
        path = osp.join(self.show_dir, f'{sid}.png')
        tmp = osp.join(self.show_dir, f'.{sid}.png.tmp')
        save_png(tmp, image)
        os.replace(tmp, path)
