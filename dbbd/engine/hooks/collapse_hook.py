"""``CollapseWatchHook``: spread, alignment and uniformity of the
contrastive embeddings at every validation, with a warning on collapse."""
import math
from typing import Dict, Optional

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from dbbd.evaluation.collapse import CollapseStats
from dbbd.registry import HOOKS

__all__ = ['CollapseWatchHook']


@HOOKS.register_module()
class CollapseWatchHook(Hook):
    """Watch the region and point embeddings for collapse.

    During a watched validation the hook switches on the model's
    ``return_embeddings``: ``DBBD.predict`` then also returns the projected
    embeddings its validation loss compared (region head on every region of
    every level, point head on the point loss's sampled points), and the
    hook streams them into :class:`~dbbd.evaluation.collapse.CollapseStats`.
    No extra forward pass; ``max_batches`` bounds the statistics' cost on
    large validation sets.

    After the validation these scalars are logged (console, TensorBoard, as
    ``val/collapse/...``) and added to the metrics dict the validation
    returns::

        collapse/region_std   collapse/region_std_l2g
        collapse/region_align collapse/region_uniform
        collapse/point_std    collapse/point_std_l2g
        collapse/point_align  collapse/point_uniform

    ``*_std`` is about ``1 / sqrt(D)`` for spread embeddings of width D (the
    head's ``out_channels``) and goes to 0 on collapse: when it falls below
    ``threshold / sqrt(D)`` on either branch, a WARNING is logged.

    Args:
        interval: watch validations ``1, 1 + interval, ...``.
        max_batches: validation batches used (None: all).
        max_uniform_points: samples per batch entering the pairwise
            uniformity (memory is its square).
        threshold: collapse warning below ``threshold / sqrt(D)``.
        seed: seed of the subsampling.
    """
    priority = 'NORMAL'  # before LoggerHook (BELOW_NORMAL) logs the scalars

    def __init__(self, interval: int = 1,
                 max_batches: Optional[int] = None,
                 max_uniform_points: int = 1024, threshold: float = 0.1,
                 seed: int = 0):
        if interval < 1:
            raise ValueError('CollapseWatchHook: interval must be >= 1')
        self.interval = interval
        self.max_batches = max_batches
        self.max_uniform_points = max_uniform_points
        self.threshold = threshold
        self.seed = seed
        self._count = 0
        self._active = False
        self._saved_flag = False
        self._stats: Dict[str, CollapseStats] = {}

    @staticmethod
    def _model(runner):
        return runner.model.module if is_model_wrapper(
            runner.model) else runner.model

    def before_val_epoch(self, runner) -> None:
        self._count += 1
        self._active = (self._count - 1) % self.interval == 0
        model = self._model(runner)
        if not hasattr(model, 'return_embeddings'):
            self._active = False
            runner.logger.warning(
                f'CollapseWatchHook: {type(model).__name__} has no '
                'return_embeddings option; nothing to watch')
        else:
            self._saved_flag = model.return_embeddings
            model.return_embeddings = self._active
        self._stats = {
            k: CollapseStats(self.max_uniform_points, seed=self.seed)
            for k in ('region', 'point')
        }

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs=None) -> None:
        if not self._active or data_batch is None:
            return
        if self.max_batches is not None and batch_idx >= self.max_batches:
            return
        emb = outputs[0].get('embeddings') if outputs else None
        if not emb:  # a batch without view2 has no loss to compare
            return
        for k, (g2l, l2g) in emb.items():
            self._stats[k].update(g2l, l2g)

    def compute(self) -> Dict[str, float]:
        """The ``collapse/...`` scalars of the validation just run."""
        out = {}
        for kind, stats in self._stats.items():
            for name, value in stats.compute().items():
                if name != 'dim':
                    out[f'collapse/{kind}_{name}'] = float(value)
        return out

    def after_val_epoch(self, runner, metrics: Optional[dict] = None) -> None:
        model = self._model(runner)
        if hasattr(model, 'return_embeddings'):
            model.return_embeddings = self._saved_flag
        if not self._active:
            return
        scalars = self.compute()
        for key, value in scalars.items():
            runner.message_hub.update_scalar(f'val/{key}', value)
        if metrics is not None:
            metrics.update(scalars)
        for kind, stats in self._stats.items():
            res = stats.compute()
            if not res:
                continue
            floor = self.threshold / math.sqrt(res['dim'])
            low = [b for b, key in (('G2L', 'std'), ('L2G', 'std_l2g'))
                   if res[key] < floor]
            if low:
                runner.logger.warning(
                    f'Feature collapse: the {kind} embeddings of '
                    f'{" and ".join(low)} hardly vary (per-dimension std '
                    f'{res["std"]:.4g} G2L / {res["std_l2g"]:.4g} L2G, below '
                    f'{self.threshold} / sqrt({res["dim"]}) = {floor:.4g}; '
                    f'spread embeddings give about '
                    f'{1 / math.sqrt(res["dim"]):.4g}). Uniformity '
                    f'{res.get("uniform", float("nan")):.3g} (0 = '
                    'collapsed). Try a lower learning rate or a higher '
                    'temperature, and check the augmentations.')
        self._stats = {}
