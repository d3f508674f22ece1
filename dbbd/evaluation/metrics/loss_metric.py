"""Validation loss as an mmengine metric."""
from collections import defaultdict

from mmengine.evaluator import BaseMetric

from dbbd.registry import METRICS

__all__ = ['ContrastiveLossMetric']


@METRICS.register_module()
class ContrastiveLossMetric(BaseMetric):
    """Average of the model's loss parts over the validation set.

    ``DBBD`` in ``mode='predict'`` returns, per batch, a dict with a
    ``losses`` entry (the same named parts ``mode='loss'`` returns: ``loss``,
    ``loss_region``, ``loss_point``, per-level parts) and ``batch_size``.
    Each part is averaged over batches, weighted by the number of scenes, and
    reported under its own name: ``loss`` is what ``save_best`` and early
    stopping monitor, logged as ``val/loss``.
    """
    default_prefix = ''

    def process(self, data_batch, data_samples):
        for out in data_samples:
            if 'losses' not in out:
                continue
            n = int(out.get('batch_size', 1))
            self.results.append(
                (n, {k: float(v) for k, v in out['losses'].items()}))

    def compute_metrics(self, results):
        total = defaultdict(float)
        count = defaultdict(int)
        for n, parts in results:
            for k, v in parts.items():
                total[k] += v * n
                count[k] += n
        return {k: total[k] / count[k] for k in total}
