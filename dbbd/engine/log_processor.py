"""Log processor: mmengine's, plus a ``learning_rate`` scalar."""
from mmengine.runner import LogProcessor

from dbbd.registry import LOG_PROCESSORS

__all__ = ['DBBDLogProcessor']


@LOG_PROCESSORS.register_module()
class DBBDLogProcessor(LogProcessor):
    """``LogProcessor`` with ``log_with_hierarchy=True`` by default.

    Scalars then reach TensorBoard as ``train/loss``, ``train/loss_region``,
    ..., ``val/loss``, ``val/loss_point``, ..., and the learning rate also as
    ``learning_rate`` (besides mmengine's ``train/lr``), the name users of
    the original trainer know. The console log is unchanged.
    """

    def __init__(self, *args, log_with_hierarchy=True, **kwargs):
        super().__init__(*args, log_with_hierarchy=log_with_hierarchy,
                         **kwargs)

    def get_log_after_iter(self, runner, batch_idx, mode):
        tag, log_str = super().get_log_after_iter(runner, batch_idx, mode)
        lr = tag.get('train/lr', tag.get('lr'))
        if mode == 'train' and lr is not None:
            tag['learning_rate'] = lr
        return tag, log_str
