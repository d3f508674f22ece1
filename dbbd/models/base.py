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
from typing import Dict, Optional, Tuple, Union

import torch
from mmengine.model import BaseModel
from torch import nn

from dbbd.utils.dist import reduce_log_vars

__all__ = ['DBBDBaseModel']


class DBBDBaseModel(BaseModel):
    """``BaseModel`` with the one-transfer log variables described above.

    Attributes:
        step_log_vars: the log variables of the latest training step (a
            dict the step returns; tensors until the non-finite check
            reads them back, Python floats after).
    """

    step_log_vars: Optional[Dict] = None

    def __init__(self,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='DBBDDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            # built here, not by BaseModel: BaseModel builds from mmengine's
            # root registry, which sees this project's modules only under
            # default_scope='dbbd'
            from dbbd.registry import MODELS
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)

    def forward(self, inputs: dict, data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        """mmengine's modes: ``'loss'`` -> :meth:`loss`, ``'predict'`` ->
        :meth:`predict`, ``'tensor'`` -> :meth:`tensor`."""
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.tensor(inputs)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got "
                         f'{mode!r}')

    def parse_losses(self, losses: Dict) -> Tuple[torch.Tensor, Dict]:
        loss, log_vars = super().parse_losses(losses)
        if self.training:
            log_vars = reduce_log_vars(log_vars)
            if not isinstance(log_vars, OrderedDict):
                log_vars = OrderedDict(log_vars)
            self.step_log_vars = log_vars
        return loss, log_vars

    @staticmethod
    def scene_results(feat: torch.Tensor, segment: torch.Tensor, sizes,
                      data_samples: Optional[list] = None,
                      shared: Optional[dict] = None) -> list:
        """``mode='predict'`` output of a self-supervisor: one dict per
        scene with ``scene_id``, ``point_feat (N_i, D)`` (detached) and
        ``segment (N_i,)``, plus the ``shared`` entries in each.

        Args:
            feat (P, D): point features of the batch, scenes in order.
            segment (P,): labels of those points (-1: unlabelled).
            sizes: ``N_i`` per scene (summing to P).
        """
        sizes = list(sizes)
        feats = feat.detach().split(sizes)
        segs = segment.split(sizes)
        results = []
        for i in range(len(sizes)):
            sample = data_samples[i] if data_samples else {}
            res = dict(scene_id=sample.get('scene_id', str(i)),
                       point_feat=feats[i], segment=segs[i])
            res.update(shared or {})
            results.append(res)
        return results
