"""Log processor: mmengine's, with honest validation scalars and a
``learning_rate`` scalar."""
from mmengine.runner import LogProcessor

from dbbd.registry import LOG_PROCESSORS

__all__ = ['DBBDLogProcessor']

# The model logs weighted parts (``loss_region``, ``loss_point``) and the
# per-level region terms (``region_l{l}``): smooth them all alike.
_MEAN_PATTERN = r'.*(loss|time|data_time|grad_norm|region_l).*'


@LOG_PROCESSORS.register_module()
class DBBDLogProcessor(LogProcessor):
    """``LogProcessor`` with ``log_with_hierarchy=True`` by default.

    Scalars then reach TensorBoard as ``train/loss``, ``train/loss_region``,
    ..., ``val/loss``, ``val/loss_point``, ..., and the learning rate also as
    ``learning_rate`` (besides mmengine's ``train/lr``).

    mmengine averages every scalar whose name contains ``loss`` over the
    last ``window_size`` values, validation metrics included: ``val/loss``
    would be a running mean over the last validations, not this
    validation's loss (and not the number ``save_best`` compares). Here a
    validation or test metric is always its current value.
    """

    def __init__(self, *args, log_with_hierarchy=True,
                 mean_pattern=_MEAN_PATTERN, **kwargs):
        super().__init__(*args, log_with_hierarchy=log_with_hierarchy,
                         mean_pattern=mean_pattern, **kwargs)

    def _collect_scalars(self, custom_cfg, runner, mode,
                         reserve_prefix=False):
        tag = super()._collect_scalars(custom_cfg, runner, mode,
                                       reserve_prefix)
        if mode in ('val', 'test'):
            scalars = runner.message_hub.log_scalars
            for key in tag:
                name = key if reserve_prefix else f'{mode}/{key}'
                if name in scalars and not name.endswith('time'):
                    tag[key] = scalars[name].current()
        return tag

    def get_log_after_iter(self, runner, batch_idx, mode):
        tag, log_str = super().get_log_after_iter(runner, batch_idx, mode)
        lr = tag.get('train/lr', tag.get('lr'))
        if mode == 'train' and lr is not None:
            tag['learning_rate'] = lr
        return tag, log_str
