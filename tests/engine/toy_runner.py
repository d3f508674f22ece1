"""A tiny real mmengine Runner for engine tests: one or two Linear layers,
8 random samples with DBBD-style ``data_samples`` (dicts with
``scene_id``), CPU, a tmp work dir.

Test modules import what they need from here (``from toy_runner import
...``; pytest puts this folder on ``sys.path``); ``conftest.py`` exposes
:func:`build_toy_runner` as the ``make_toy_runner`` fixture."""
import os
import os.path as osp
import uuid

import numpy as np
import torch
import torch.nn as nn
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import dbbd.engine  # noqa: F401  safe loader, DBBD hooks


class ToyModel(BaseModel):
    """``linear`` (4 -> ``width``, MSE to the first target column), an
    optional second layer called ``extra_name``.

    ``nan_at``: the 0-based index of the training forward pass
    (``mode='loss'``) that goes wrong; ``nan_kind`` says how: ``'loss'``
    (the loss is NaN), ``'grad'`` (the loss is finite, a gradient is NaN)
    or ``'outputs'`` (only the logged outputs of ``train_step`` hold a NaN,
    as for a model whose ``train_step`` does not go through ``forward``).
    """

    def __init__(self, width=1, extra_name=None, nan_at=None,
                 nan_kind='loss'):
        super().__init__()
        self.linear = nn.Linear(4, width)
        if extra_name:
            self.add_module(extra_name, nn.Linear(width, 1))
        self.nan_at, self.nan_kind = nan_at, nan_kind
        self.loss_calls = 0

    def _bad_now(self, kind):
        return self.nan_kind == kind and self.loss_calls - 1 == self.nan_at

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(inputs)[:, :1]
        if mode == 'tensor':
            return out
        y = torch.stack([s['y'] for s in data_samples])
        if mode == 'predict':
            return list(((out - y)**2).mean(dim=1).detach())
        self.loss_calls += 1
        loss = ((out - y)**2).mean()
        if self._bad_now('loss'):
            loss = loss * float('nan')
        elif self._bad_now('grad'):
            # d sqrt(x)/dx at 0 is inf; times 0 gives a NaN gradient while
            # the loss itself stays finite.
            loss = loss + torch.sqrt((self.linear.weight * 0).sum())
        return dict(loss=loss)

    def train_step(self, data, optim_wrapper):
        log_vars = super().train_step(data, optim_wrapper)
        if self._bad_now('outputs'):
            log_vars['loss_aux'] = torch.tensor(float('inf'))
        return log_vars


class ToyDataset(Dataset):
    """``n`` samples named ``scene0000`` ... in order."""

    def __init__(self, n=8):
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 4, generator=g)
        self.y = torch.randn(n, 1, generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return dict(
            inputs=self.x[i], data_sample=dict(scene_id=f'scene{i:04d}',
                                               y=self.y[i]))


def toy_collate(samples):
    """Like ``dbbd_collate``: ``data_samples`` is a list of dicts."""
    return dict(
        inputs=torch.stack([s['inputs'] for s in samples]),
        data_samples=[s['data_sample'] for s in samples])


class ScriptedMetric(BaseMetric):
    """Reports ``values[k]`` as ``loss`` at its k-th evaluation (the last
    value after that), as a numpy scalar the way real metrics do."""

    def __init__(self, values):
        super().__init__()
        self.values = list(values)
        self.calls = 0

    def process(self, data_batch, data_samples):
        self.results.extend(float(s) for s in data_samples)

    def compute_metrics(self, results):
        v = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return dict(loss=np.float64(v))


class IterCounter(Hook):
    """Counts training iterations and epochs run by this runner."""

    def __init__(self):
        self.iters = 0
        self.epochs = 0

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.iters += 1

    def after_train_epoch(self, runner):
        self.epochs += 1


def build_toy_runner(work_dir, model=None, max_epochs=2, values=None,
                     checkpoint=None, custom_hooks=None, model_cfg=None,
                     **kw):
    """A Runner on :class:`ToyModel` / :class:`ToyDataset` (batch 2, no
    shuffling: batch ``b`` of an epoch holds scenes ``2b`` and ``2b + 1``).

    Args:
        values: the validation ``loss`` per validation (see
            :class:`ScriptedMetric`); None for no validation.
        checkpoint: the checkpoint hook config (default: a
            ``SafeCheckpointHook`` every epoch).
        model_cfg: ``cfg.model``, recorded in checkpoint meta.
    """
    val = {}
    if values is not None:
        val = dict(
            val_dataloader=dict(
                dataset=ToyDataset(4),
                sampler=dict(type='DefaultSampler', shuffle=False),
                collate_fn=toy_collate,
                batch_size=2,
                num_workers=0),
            val_cfg=dict(),
            val_evaluator=[ScriptedMetric(values)])
    return Runner(
        model=model if model is not None else ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=toy_collate,
            batch_size=2,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9)),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs, val_interval=1),
        default_hooks=dict(
            checkpoint=checkpoint if checkpoint is not None else dict(
                type='dbbd.SafeCheckpointHook', interval=1),
            logger=dict(type='LoggerHook', interval=100)),
        custom_hooks=custom_hooks,
        randomness=dict(seed=0),
        default_scope='dbbd',  # as the real configs
        # Runners built in the same second would share a MessageHub.
        experiment_name=f'toy_{uuid.uuid4().hex[:8]}',
        cfg=dict(model=model_cfg if model_cfg is not None else dict(
            type='ToyModel', width=1)),
        **val,
        **kw)


def read_log(runner):
    """The text of this runner's log file."""
    path = osp.join(runner.log_dir, f'{runner.timestamp}.log')
    with open(path, encoding='utf-8') as f:
        return f.read()


def ckpt_files(folder):
    return sorted(n for n in os.listdir(folder) if n.endswith('.pth'))


def is_plain(obj):
    """Only dict / list / str / int / float / bool / None, all the way
    down (what weights_only loading reads without an allow-list)."""
    if obj is None or type(obj) in (bool, int, float, str):
        return True
    if type(obj) is dict:
        return all(type(k) is str and is_plain(v) for k, v in obj.items())
    if type(obj) is list:
        return all(is_plain(v) for v in obj)
    return False
