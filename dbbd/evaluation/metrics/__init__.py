from .linear_probe import LinearProbeMetric
from .loss_metric import ContrastiveLossMetric
from .seg_metric import SegMetric

__all__ = ['ContrastiveLossMetric', 'LinearProbeMetric', 'SegMetric']
