from .linear_probe import LinearProbeMetric
from .loss_metric import ContrastiveLossMetric

__all__ = ['ContrastiveLossMetric', 'LinearProbeMetric']
