"""``ClassWeightHook``: the training split's class counts to a segmentor
with ``class_weight='auto'``."""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from dbbd.registry import HOOKS
from ..runner_access import resume_requested

__all__ = ['ClassWeightHook', 'add_class_weight_hook', 'wants_auto_weights']


def wants_auto_weights(cfg) -> bool:
    """Whether a config's model asks for ``class_weight='auto'``."""
    model = cfg.get('model') or {}
    return isinstance(model, dict) and model.get('class_weight') == 'auto'


def add_class_weight_hook(cfg) -> bool:
    """Append ``dict(type='ClassWeightHook')`` to ``cfg.custom_hooks`` when
    the model has ``class_weight='auto'`` and the config has no such hook
    (``tools/train.py`` calls it on every config). Returns whether it did.
    """
    if not wants_auto_weights(cfg):
        return False
    hooks = list(cfg.get('custom_hooks') or [])
    if any(isinstance(h, dict) and str(h.get('type', '')).split('.')[-1] ==
           'ClassWeightHook' for h in hooks):
        return False
    hooks.append(dict(type='ClassWeightHook'))
    cfg['custom_hooks'] = hooks
    return True


@HOOKS.register_module()
class ClassWeightHook(Hook):
    """Give a ``PointSegmentor`` with ``class_weight='auto'`` its weights
    when training starts, and log them in one line.

    ``before_train`` (after ``load_from`` / ``--resume`` have loaded):

    - a resumed run whose checkpoint holds the weights keeps them (the run
      continues with the weights it started with);
    - otherwise the training dataset counts its labelled points per class
      (:func:`~dbbd.datasets.seg_dataset.dataset_class_counts`: a
      ``SegDataset``, through ``ConcatDataset`` / ``RepeatDataset``
      wrappers) and the model turns them into weights
      (:meth:`PointSegmentor.set_class_counts`); a ``load_from``
      checkpoint's weights are replaced by those of this run's data.

    The weights are a buffer of the model, so every checkpoint carries
    them. A model without ``'auto'`` weights is left alone, so the hook may
    stay in any config. ``tools/train.py`` adds it to configs that need it.

    Config::

        custom_hooks = [dict(type='ClassWeightHook')]
    """

    priority = 'ABOVE_NORMAL'

    def before_train(self, runner) -> None:
        from dbbd.datasets.seg_dataset import dataset_class_counts
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not getattr(model, 'class_weight_auto', False):
            return
        if model.class_weight_ready and resume_requested(runner):
            runner.logger.info(
                "class_weight='auto' (restored from the checkpoint): "
                + model.class_weight_line())
            return
        dataset = runner.train_dataloader.dataset
        counts = dataset_class_counts(dataset)
        model.set_class_counts(counts)
        names = model.class_names or getattr(dataset, 'metainfo', {}).get(
            'classes')
        if names is not None and len(names) != model.num_classes:
            names = None
        runner.logger.info(
            f"class_weight='auto' from {int(counts.sum()):,} labelled "
            'training points (ENet 1/ln(1.02 + f), mean 1 over present '
            'classes): ' + model.class_weight_line(counts, names))
