"""A training step of the real Runner reads from the device once.

On a GPU every read of a device value on the host (``.item()``,
``.tolist()``, ``bool(tensor)``, ``nonzero``, boolean indexing, ...) waits
for the device to finish: the training step loses its overlap with the
host. DBBD builds everything the tree needs in the loader (numpy), so a
step needs one read: the non-finite check of the losses and gradient norm,
whose values the logger then reuses. This test counts the host reads of
full iterations of the real Runner (tiny small-mode config, the default
hooks) on the CPU, where every such call is made the same way, by wrapping
the functions that read or depend on device values.
"""
import contextlib
import sys

import pytest
import torch
from mmengine.hooks import Hook

from tiny import build_runner, tiny_cfg, tiny_seg_cfg

# Tensor methods and torch functions whose result the host must wait for.
_METHODS = ('item', 'tolist', 'numpy', 'cpu', '__bool__', '__int__',
            '__float__', '__index__', 'nonzero', 'any', 'all', 'unique',
            'masked_select')
_FUNCTIONS = ('nonzero', 'equal', 'unique', 'bincount', 'masked_select',
              'repeat_interleave')


def _from_optimizer(frame):
    """torch.optim keeps its step counts in CPU tensors on every device, on
    purpose (reading them is no device synchronisation)."""
    return frame.f_globals.get('__name__', '').startswith('torch.optim')


class SyncCounter:
    """Counts calls of the functions above while ``counting`` is on."""

    def __init__(self):
        self.counting = False
        self.calls = []

    def wrap(self, owner, name):
        original = getattr(owner, name)

        def wrapper(*args, **kwargs):
            if self.counting and not _from_optimizer(sys._getframe(1)):
                self.calls.append(name)
            return original(*args, **kwargs)

        return original, wrapper

    @contextlib.contextmanager
    def installed(self):
        saved = []
        for owner, names in ((torch.Tensor, _METHODS), (torch, _FUNCTIONS)):
            for name in names:
                original, wrapper = self.wrap(owner, name)
                saved.append((owner, name, original))
                setattr(owner, name, wrapper)
        getitem = torch.Tensor.__getitem__

        def counted_getitem(t, index):
            # boolean-mask indexing finds the True entries on the host
            if self.counting and isinstance(index, torch.Tensor) and \
                    index.dtype == torch.bool:
                self.calls.append('__getitem__[bool]')
            return getitem(t, index)

        saved.append((torch.Tensor, '__getitem__', getitem))
        torch.Tensor.__getitem__ = counted_getitem
        try:
            yield self
        finally:
            for owner, name, original in saved:
                setattr(owner, name, original)


class CountIterations(Hook):
    """Switches counting on around each training iteration: the whole
    ``train_step`` and every hook's ``after_train_iter``."""

    def __init__(self, counter):
        self.counter = counter
        self.per_iter = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.counter.calls = []
        self.counter.counting = True

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.counter.counting = False
        self.per_iter.append(list(self.counter.calls))


def _count(cfg):
    """Train ``cfg``, counting the host reads of each iteration."""
    counter = SyncCounter()
    runner = build_runner(cfg)
    begin = CountIterations(counter)
    end = CountIterations(counter)
    # first before the step, last after every other hook of the iteration
    runner.register_hook(begin, priority='HIGHEST')
    runner.register_hook(end, priority='LOWEST')
    begin.after_train_iter = lambda *a, **k: None
    end.before_train_iter = lambda *a, **k: None
    with counter.installed():
        runner.train()
    return runner, end.per_iter


@pytest.fixture
def counted_run(demo_root, tmp_path):
    cfg = tiny_cfg(demo_root, tmp_path, max_epochs=2)
    cfg.train_cfg.val_interval = 10  # no validation: training steps only
    return _count(cfg)


def test_a_training_iteration_reads_the_device_once(counted_run):
    runner, per_iter = counted_run
    assert len(per_iter) == 4  # 2 epochs of 4 rooms, batch 2
    for calls in per_iter:
        assert calls == ['tolist'], calls
    # and that one read fed the logger: the logged losses are host floats
    hub = runner.message_hub
    assert hub.get_scalar('train/loss').current() > 0


def test_a_segmentation_iteration_with_auto_weights_and_lovasz_too(
        demo_root, tmp_path):
    """Class-weighted cross-entropy and Lovász-softmax (sorting, cumulative
    sums, the ignored points masked, not indexed) add no host read."""
    from dbbd.engine.hooks.class_weight_hook import add_class_weight_hook
    cfg = tiny_seg_cfg(demo_root, tmp_path, 'scratch', max_epochs=1)
    cfg.model.class_weight = 'auto'
    cfg.model.losses = [dict(type='SegCrossEntropyLoss'),
                        dict(type='LovaszSoftmaxLoss')]
    cfg.train_dataloader.dataset.labelled_points = 100  # most points -1
    cfg.train_cfg.val_begin = 2  # no validation
    add_class_weight_hook(cfg)
    runner, per_iter = _count(cfg)
    assert len(per_iter) == 2
    for calls in per_iter:
        assert calls == ['tolist'], calls
    assert runner.message_hub.get_scalar('train/loss_lovasz').current() > 0


def test_the_counter_sees_what_it_is_meant_to(demo_root):
    """The counter is not blind: the tree index built on the device (as
    before it moved into the loader) makes host reads per level."""
    from dbbd.datasets import dbbd_collate
    from dbbd.models.utils import index_tree
    from dbbd.registry import DATASETS
    import copy
    cfg = tiny_cfg(demo_root, '/tmp/unused')
    ds = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    inputs = dbbd_collate([ds[0], ds[1]])['inputs']
    counter = SyncCounter()
    with counter.installed():
        counter.counting = True
        index_tree(inputs['point_region'], inputs['region_parent'],
                   inputs['region_center'])
        torch.ones(3)[torch.tensor([True, False, True])]
        counter.counting = False
    assert counter.calls.count('numpy') >= 3
    assert counter.calls[-1] == '__getitem__[bool]'
