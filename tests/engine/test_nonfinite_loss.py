"""``NonFiniteLossHook``: a NaN/Inf loss or gradient stops training with one
line naming where and which scenes; no weight or checkpoint is touched."""
import copy
import os
import os.path as osp

import pytest
import torch
from mmengine.hooks import Hook

from dbbd.engine import (NonFiniteLossError, NonFiniteLossHook,
                         NonFiniteWeightsError)
from dbbd.engine.checkpoint import load_checkpoint_safe
from toy_runner import ToyModel, ckpt_files, read_log

# 8 samples, batch 2: 4 iterations per epoch. Forward pass 5 (0-based) is
# iteration 6 = epoch 2, batch 2, which holds scene0002 and scene0003.
BAD_FORWARD = 5


class WeightsBeforeEachIter(Hook):
    """Copies of the weights before every training iteration."""

    priority = 'LOWEST'

    def __init__(self):
        self.snapshots = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.snapshots.append(copy.deepcopy(runner.model.state_dict()))


def _same(a, b):
    return set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def _all_finite(state):
    return all(torch.isfinite(v).all() for v in state.values())


def _train_until_error(make_toy_runner, work_dir, kind, checkpoint=None):
    snaps = WeightsBeforeEachIter()
    runner = make_toy_runner(
        work_dir,
        model=ToyModel(nan_at=BAD_FORWARD, nan_kind=kind),
        max_epochs=3,
        checkpoint=checkpoint,
        custom_hooks=[dict(type='NonFiniteLossHook'), snaps])
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    return runner, snaps, str(info.value)


@pytest.mark.parametrize('by_epoch', [True, False],
                         ids=['epoch_ckpts', 'iter_ckpts'])
def test_nan_loss_stops_with_one_line_and_keeps_checkpoints(
        make_toy_runner, tmp_path, by_epoch):
    # Checkpoints every epoch, or every iteration: then the checkpoint hook
    # would save in the very after_train_iter of the bad iteration.
    ckpt = dict(type='dbbd.SafeCheckpointHook', interval=1,
                by_epoch=by_epoch, max_keep_ckpts=3)
    runner, snaps, msg = _train_until_error(
        make_toy_runner, tmp_path, 'loss', checkpoint=ckpt)

    assert '\n' not in msg
    assert msg.startswith('non-finite loss at epoch 2, iteration 6 '
                          '(batch 2/4 of the epoch)')
    assert 'scenes: scene0002, scene0003' in msg
    assert 'loss=nan' in msg
    assert 'weights are unchanged' in msg
    last = 'epoch_1.pth' if by_epoch else 'iter_5.pth'
    assert msg.endswith(f'last good checkpoint: {osp.join(tmp_path, last)}')
    # logged too, for whoever reads the run's log later
    assert msg in read_log(runner)

    # 6 iterations started; the weights are those from before the 6th
    assert len(snaps.snapshots) == 6
    current = runner.model.state_dict()
    assert _same(current, snaps.snapshots[-1]) and _all_finite(current)

    # nothing saved at or after the bad iteration; the last checkpoint holds
    # finite weights from before it and loads with the safe loader
    expected = ['epoch_1.pth'] if by_epoch else [
        'iter_3.pth', 'iter_4.pth', 'iter_5.pth'
    ]
    assert ckpt_files(tmp_path) == expected
    with open(osp.join(tmp_path, 'last_checkpoint')) as f:
        assert f.read().strip() == last
    saved = load_checkpoint_safe(osp.join(tmp_path, last))
    assert _all_finite(saved['state_dict'])
    # epoch_1 / iter_5 were saved right before iteration 5 / 6 started
    assert _same(saved['state_dict'], snaps.snapshots[4 if by_epoch else 5])


def test_nan_gradient_with_finite_loss_is_caught_before_the_step(
        make_toy_runner, tmp_path):
    runner, snaps, msg = _train_until_error(make_toy_runner, tmp_path,
                                            'grad')
    assert '\n' not in msg
    assert msg.startswith('non-finite gradient at epoch 2, iteration 6')
    assert 'scene0002, scene0003' in msg
    assert '1 of 2 gradients non-finite, first: linear.weight' in msg
    assert 'before the optimizer step' in msg
    # the SGD step (with momentum) never ran: weights as before iteration 6
    assert _same(runner.model.state_dict(), snaps.snapshots[-1])
    assert ckpt_files(tmp_path) == ['epoch_1.pth']


def test_nan_in_outputs_only_is_caught_after_the_iteration(
        make_toy_runner, tmp_path):
    # A model whose logged losses go wrong without going through forward:
    # the after_train_iter check still stops before any checkpoint.
    ckpt = dict(type='dbbd.SafeCheckpointHook', interval=1, by_epoch=False)
    runner, _, msg = _train_until_error(
        make_toy_runner, tmp_path, 'outputs', checkpoint=ckpt)
    assert '\n' not in msg
    assert msg.startswith('non-finite loss at epoch 2, iteration 6')
    assert 'loss_aux=inf' in msg and 'scene0002, scene0003' in msg
    assert 'iter_6.pth' not in ckpt_files(tmp_path)
    assert 'iter_5.pth' in ckpt_files(tmp_path)


def test_no_checkpoint_yet_is_said(make_toy_runner, tmp_path):
    runner = make_toy_runner(
        tmp_path, model=ToyModel(nan_at=1),
        custom_hooks=[dict(type='NonFiniteLossHook')])
    with pytest.raises(NonFiniteLossError,
                       match=r'iteration 2 .*no checkpoint had been saved '
                       r'yet$'):
        runner.train()
    assert ckpt_files(tmp_path) == []


def test_finite_training_is_untouched_and_hooks_are_removed(
        make_toy_runner, tmp_path):
    hook = NonFiniteLossHook()
    runner = make_toy_runner(tmp_path, values=[1.0], custom_hooks=[hook])
    runner.train()  # validation forward passes are not checked
    assert runner.epoch == 2
    assert hook._handles == []
    assert not runner.optim_wrapper.optimizer._optimizer_step_pre_hooks
    assert not runner.model._forward_hooks


def test_is_a_floating_point_error():
    # tools/train.py may catch either
    assert issubclass(NonFiniteLossError, FloatingPointError)


def _inf_lr_runner(make_toy_runner, work_dir, **kw):
    runner = make_toy_runner(work_dir, **kw)
    # what optim_wrapper.optimizer.lr=inf does (the config check refuses it)
    runner.optim_wrapper['optimizer']['lr'] = float('inf')
    return runner


def test_non_finite_weights_are_never_saved(make_toy_runner, tmp_path):
    """lr=inf without the loss hook: one step makes every weight non-finite;
    the checkpoint due after the epoch is refused in one line and nothing
    is written."""
    runner = _inf_lr_runner(make_toy_runner, tmp_path, values=[1.0])
    with pytest.raises(NonFiniteWeightsError) as info:
        runner.train()
    msg = str(info.value)
    assert '\n' not in msg
    assert msg.startswith('the model weights hold NaN/Inf (2 of 2 tensors, '
                          'first: linear.weight')
    assert 'epoch_1.pth was not saved' in msg
    assert msg.endswith('no checkpoint had been saved yet')
    assert not _all_finite(runner.model.state_dict())
    assert [n for n in os.listdir(tmp_path)
            if n.endswith(('.pth', '.dbbd-tmp')) or n == 'last_checkpoint'
            ] == []


def test_non_finite_checkpoint_is_not_named_good(make_toy_runner, tmp_path):
    """A work dir whose latest checkpoint holds non-finite weights (written
    before this check existed): a failure does not call it good."""
    make_toy_runner(tmp_path, max_epochs=1).train()
    path = osp.join(tmp_path, 'epoch_1.pth')
    ckpt = load_checkpoint_safe(path)
    ckpt['state_dict']['linear.bias'].fill_(float('inf'))
    torch.save(ckpt, path)
    runner = make_toy_runner(tmp_path, model=ToyModel(nan_at=0),
                             max_epochs=2, load_from=path,
                             custom_hooks=[dict(type='NonFiniteLossHook')])
    with pytest.raises(NonFiniteLossError) as info:
        runner.train()
    msg = str(info.value)
    assert 'last good checkpoint' not in msg
    assert msg.endswith(f'the latest checkpoint {path} has non-finite '
                        'weights too (first: linear.bias), so no good '
                        'checkpoint is known')


class InfInOptimizerState(Hook):
    """Puts an inf into the optimizer's state after iteration ``at`` (0-based),
    as Adam's second moment gets from a gradient too large for float32
    while the weights stay finite."""

    def __init__(self, at):
        self.at = at

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if runner.iter == self.at:  # 0-based here (counted up after)
            opt = runner.optim_wrapper.optimizer
            state = opt.state[opt.param_groups[0]['params'][0]]
            state['momentum_buffer'][0, 0] = float('inf')


def test_non_finite_optimizer_state_is_never_saved(make_toy_runner,
                                                   tmp_path):
    """Epoch 1 saved; an inf enters the optimizer state in epoch 2: its
    checkpoint is refused in one line naming the value, and epoch 1 is
    named the last good one."""
    runner = make_toy_runner(tmp_path, max_epochs=3,
                             custom_hooks=[InfInOptimizerState(at=7)])
    with pytest.raises(NonFiniteWeightsError) as info:
        runner.train()
    msg = str(info.value)
    assert '\n' not in msg
    assert msg.startswith('the optimizer state holds NaN/Inf (1 value(s), '
                          'first: state.0.momentum_buffer; ')
    assert 'epoch_2.pth was not saved' in msg
    assert msg.endswith(
        f'last good checkpoint: {osp.join(str(tmp_path), "epoch_1.pth")}')
    assert _all_finite(runner.model.state_dict())  # the weights are fine
    assert ckpt_files(tmp_path) == ['epoch_1.pth']


def test_resume_from_non_finite_optimizer_state_is_refused(make_toy_runner,
                                                           tmp_path):
    """A checkpoint written before this check, holding an inf in its
    optimizer state: --resume stops in one line before anything is
    loaded or trained; it is not called the last good checkpoint."""
    from dbbd.engine import CheckpointLoadError
    from dbbd.engine.hooks.nonfinite_loss_hook import last_good_checkpoint
    make_toy_runner(tmp_path, max_epochs=1).train()
    path = osp.join(str(tmp_path), 'epoch_1.pth')
    ckpt = load_checkpoint_safe(path)
    ckpt['optimizer']['state'][0]['momentum_buffer'].fill_(float('inf'))
    torch.save(ckpt, path)
    assert last_good_checkpoint(str(tmp_path)) == (
        f'the latest checkpoint {path} has non-finite optimizer state too '
        '(first: state.0.momentum_buffer), so no good checkpoint is known')
    model = ToyModel()
    before = copy.deepcopy(model.state_dict())
    runner = make_toy_runner(tmp_path, model=model, max_epochs=2,
                             resume=True)
    with pytest.raises(CheckpointLoadError) as info:
        runner.train()
    assert str(info.value) == (
        f'{path} holds non-finite optimizer state (first: '
        'state.0.momentum_buffer); resuming would carry it on (NaN weights, '
        'or weights that stop learning); resume from an earlier checkpoint '
        'with --resume PATH, or start from its weights alone with '
        f'--cfg-options load_from={path} (a fresh optimizer)')
    assert _same(model.state_dict(), before)
    assert ckpt_files(tmp_path) == ['epoch_1.pth']
