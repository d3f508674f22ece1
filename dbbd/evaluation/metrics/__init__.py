from .loss_metric import ContrastiveLossMetric

__all__ = ['ContrastiveLossMetric']
