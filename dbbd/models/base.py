"""What every DBBD algorithm shares: mmengine's ``BaseModel`` whose
training step reads its logged values back from the device once.

A training step of mmengine reads each logged loss back with ``.item()``
(one host synchronisation per value), and a non-finite check adds its own.
Here :meth:`parse_losses` keeps the step's log variables in
:attr:`step_log_vars` (averaged over ranks on the device when training is
distributed, without a synchronisation); ``NonFiniteLossHook`` reads them
together with the gradient norm in ONE transfer before the optimizer step,
checks them, and writes the host values back into the same dict, which is
what ``train_step`` returns and the logger reads.
"""
from collections import OrderedDict
from typing import Dict, Optional, Tuple

import torch
from mmengine.model import BaseModel

__all__ = ['DBBDBaseModel']


class DBBDBaseModel(BaseModel):
    """``BaseModel`` with the one-transfer log variables described above.

    Attributes:
        step_log_vars: the log variables of the latest training step (a
            dict the step returns; tensors until the non-finite check
            reads them back, Python floats after).
    """

    step_log_vars: Optional[Dict] = None

    def parse_losses(self, losses: Dict) -> Tuple[torch.Tensor, Dict]:
        loss, log_vars = super().parse_losses(losses)
        if self.training:
            from dbbd.engine.distributed import reduce_log_vars
            log_vars = reduce_log_vars(log_vars)
            if not isinstance(log_vars, OrderedDict):
                log_vars = OrderedDict(log_vars)
            self.step_log_vars = log_vars
        return loss, log_vars
