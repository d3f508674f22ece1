"""``PreciseBNHook``: BatchNorm running statistics recomputed with the
current weights before they are saved or evaluated."""
from typing import List

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch.nn.modules.batchnorm import _BatchNorm

from dbbd.registry import HOOKS

__all__ = ['PreciseBNHook', 'training_batchnorms']


def training_batchnorms(model: torch.nn.Module) -> List[_BatchNorm]:
    """The BatchNorm layers whose running statistics training updates (in
    train mode, tracking statistics): a frozen backbone's are left alone."""
    return [m for m in model.modules()
            if isinstance(m, _BatchNorm) and m.training
            and m.track_running_stats]


@HOOKS.register_module()
class PreciseBNHook(Hook):
    """Recompute the running mean and variance of every training BatchNorm
    layer at the end of a training epoch, from ``num_iters`` training
    batches and the weights of that moment (forward passes only, no
    gradient, no weight change), as mmpretrain's ``PreciseBNHook`` does.

    Why: evaluation (validation, the collapse watch, the in-loop probe) and
    a frozen linear probe read a network through its BatchNorm running
    statistics. With SpUNet's momentum of 0.01 these move 1% per batch from
    their start (mean 0, variance 1) while the batches' own variances are
    ~1e-3 at initialisation, so after a few hundred steps the statistics
    are still mostly their start and eval-mode features are near constant.
    The recomputed statistics are the average over the batches (momentum
    ``None``), averaged across ranks under distributed training.

    The hook runs before the checkpoint hook (priority ``ABOVE_NORMAL``), so
    the checkpoint of an epoch holds the recomputed statistics and a resumed
    run continues from them. Training batches are read again in the order of
    the epoch just finished; their augmentation is keyed by (seed, epoch,
    scene), so the read changes nothing that training sees. A model without
    training BatchNorm layers (the PointNet path, a frozen backbone) costs
    nothing.

    Args:
        num_iters: training batches per recomputation (all of them when the
            loader has fewer).
        interval: every ``interval`` epochs, and after the last one.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, num_iters: int = 16, interval: int = 1) -> None:
        if int(num_iters) < 1 or int(interval) < 1:
            raise ValueError(
                f'PreciseBNHook: num_iters and interval must be >= 1, got '
                f'num_iters={num_iters}, interval={interval}')
        self.num_iters = int(num_iters)
        self.interval = int(interval)

    def after_train_epoch(self, runner) -> None:
        if not (self.every_n_epochs(runner, self.interval)
                or self.is_last_train_epoch(runner)):
            return
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        self.recompute(model, runner.train_dataloader, self.num_iters)
        runner.logger.info(
            f'PreciseBNHook: BatchNorm statistics recomputed from '
            f'{min(self.num_iters, len(runner.train_dataloader))} training '
            f'batches')

    @staticmethod
    @torch.no_grad()
    def recompute(model: torch.nn.Module, dataloader, num_iters: int) -> int:
        """Recompute the statistics of ``model``'s training BatchNorm layers
        from up to ``num_iters`` batches of ``dataloader``, through
        ``model.data_preprocessor`` and ``mode='loss'``. Returns the number
        of batches read (0 when there is nothing to recompute)."""
        bns = training_batchnorms(model)
        if not bns:
            return 0
        momenta = [bn.momentum for bn in bns]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None  # cumulative average over the batches
        seen = 0
        try:
            for batch in dataloader:
                if seen >= num_iters:
                    break
                data = model.data_preprocessor(batch, True)
                model._run_forward(data, mode='loss')
                seen += 1
        finally:
            for bn, momentum in zip(bns, momenta):
                bn.momentum = momentum
        if get_world_size() > 1:
            for bn in bns:
                all_reduce(bn.running_mean, op='mean')
                all_reduce(bn.running_var, op='mean')
        return seen
