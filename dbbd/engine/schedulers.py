"""``ResumableCosineAnnealingLR``: a cosine schedule as long as the run,
also when a run is resumed with another length."""
import math
from typing import Dict

from mmengine.logging import print_log
from mmengine.optim import CosineAnnealingLR
from mmengine.optim.scheduler.param_scheduler import INF

from dbbd.registry import PARAM_SCHEDULERS

__all__ = ['ResumableCosineAnnealingLR']


@PARAM_SCHEDULERS.register_module()
class ResumableCosineAnnealingLR(CosineAnnealingLR):
    """mmengine's ``CosineAnnealingLR`` (same arguments) whose length is the
    config's, also on resume.

    Leave ``end`` and ``T_max`` out and the schedule spans the run: mmengine
    sets a missing ``end`` to the train loop's ``max_epochs`` (or
    ``max_iters``) and a missing ``T_max`` to ``end - begin``, so
    ``train_cfg.max_epochs`` alone sets its length::

        param_scheduler = [dict(type='ResumableCosineAnnealingLR',
                                eta_min=1e-5, by_epoch=True,
                                convert_to_iter_based=True)]

    mmengine's ``load_state_dict`` replaces everything with the
    checkpoint's state, the length included: a finished run resumed with a
    larger ``max_epochs`` stayed at its last learning rate for every new
    epoch, whatever the config said. Here the progress (how many steps were
    taken) comes from the checkpoint and the length (``begin``, ``end``,
    ``T_max``) from the config. When the two lengths differ, the learning
    rate becomes the cosine's value at the current step of the config's
    length (where a run of that length would be) and the log says so in one
    line; an unchanged length loads exactly as mmengine does, bit for bit.

    The value is this scheduler's own closed form: with other schedulers
    acting on the learning rate at the same steps, resume with the saved
    length.
    """

    LENGTH = ('begin', 'end', 'T_max')

    def __init__(self, optimizer, *args, begin=0, end=INF, **kwargs):
        # A cosine after a warm-up (``begin`` > 0, no ``end``) in a run
        # no longer than the warm-up (a 1-epoch check of a fine-tuning
        # config): mmengine refuses ``end <= begin``. The run ends before
        # the cosine starts, so it is given one step that never comes.
        if end <= begin:
            print_log(f'param_scheduler: the cosine starts at step {begin} '
                      f'and the run ends at step {end}: only the '
                      'schedulers before it (the warm-up) act in this run',
                      logger='current')
            end = begin + 1
        super().__init__(optimizer, *args, begin=begin, end=end, **kwargs)

    def load_state_dict(self, state_dict: dict) -> None:
        configured = self._length()
        super().load_state_dict(state_dict)
        saved = self._length()
        if saved == configured:
            return
        self.__dict__.update(configured)
        # the steps a run of the configured length would have counted by now
        # (``step`` counts calls in _global_step, updates in last_step)
        done = self._global_step
        self.last_step = (min(done, self.end - 1) - self.begin
                          if done >= self.begin else -1)
        if self.last_step >= 0:  # before ``begin`` the value is not ours
            for group, base in zip(self.optimizer.param_groups,
                                   self.base_values):
                group[self.param_name] = self._cosine(base)
        values = [g[self.param_name] for g in self.optimizer.param_groups]
        self._last_value = values
        unit = 'epochs' if self.by_epoch else 'iterations'
        print_log(
            f'param_scheduler: the checkpoint\'s cosine schedule spans '
            f'{unit} {saved["begin"]}..{saved["end"]} (T_max '
            f'{saved["T_max"]}), this config\'s {self.begin}..{self.end} '
            f'(T_max {self.T_max}); continuing on the config\'s at step '
            f'{self._global_step}: {self.param_name} {values[0]:.4g}',
            logger='current')

    def _length(self) -> Dict[str, float]:
        return {k: getattr(self, k) for k in self.LENGTH}

    def _cosine(self, base: float) -> float:
        """The value at ``last_step`` in closed form."""
        eta_min = (base * self.eta_min_ratio
                   if self.eta_min_ratio is not None else self.eta_min)
        return eta_min + (base - eta_min) * (
            1 + math.cos(math.pi * self.last_step / self.T_max)) / 2
