"""``ResumableCosineAnnealingLR``: the cosine spans ``max_epochs``, also
when a run is resumed with another ``max_epochs``; an unchanged length
resumes bit for bit."""
import math

import pytest
import torch
from mmengine.hooks import Hook

from toy_runner import ToyModel, build_toy_runner, read_log

ITERS = 4  # toy_runner: 8 samples, batch 2
BASE, ETA_MIN = 0.1, 1e-3  # toy_runner's SGD lr, the schedule's floor
NOTE = "param_scheduler: the checkpoint's cosine schedule spans"


class LrRecorder(Hook):
    """The learning rate of every training iteration."""

    def __init__(self, stop_after_epoch=None):
        self.lrs = []
        self.stop_after_epoch = stop_after_epoch

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.lrs.append(runner.optim_wrapper.get_lr()['lr'][0])

    def after_train_epoch(self, runner):
        # runner.epoch is still the 0-based index of the epoch just run
        if runner.epoch + 1 == self.stop_after_epoch:
            runner.train_loop.stop_training = True


def cosine(step, length):
    """The cosine from BASE to ETA_MIN over ``length`` iterations, at
    ``step``."""
    return ETA_MIN + (BASE - ETA_MIN) * (
        1 + math.cos(math.pi * step / length)) / 2


def train(work_dir, max_epochs, kind='dbbd.ResumableCosineAnnealingLR',
          stop_after_epoch=None, **kw):
    """The toy run with a cosine over the run (no ``end``, no ``T_max``);
    returns (learning rates, runner)."""
    recorder = LrRecorder(stop_after_epoch)
    torch.manual_seed(0)  # the same initial weights in every run
    runner = build_toy_runner(
        work_dir, model=ToyModel(), max_epochs=max_epochs,
        custom_hooks=[recorder],
        param_scheduler=dict(type=kind, eta_min=ETA_MIN, by_epoch=True,
                             convert_to_iter_based=True), **kw)
    runner.train()
    return recorder.lrs, runner


def test_a_finished_run_resumed_longer_follows_the_new_length(tmp_path):
    """2 epochs: a cosine over 8 iterations. Resumed with max_epochs=4:
    iterations 8..15 of a cosine over 16, and one line in the log."""
    first, runner = train(tmp_path, 2)
    assert first == pytest.approx([cosine(t, 2 * ITERS)
                                   for t in range(2 * ITERS)], rel=1e-9)
    assert NOTE not in read_log(runner)
    resumed, runner = train(tmp_path, 4, resume=True)
    assert resumed == pytest.approx(
        [cosine(t, 4 * ITERS) for t in range(2 * ITERS, 4 * ITERS)],
        rel=1e-9)
    notes = [line for line in read_log(runner).splitlines() if NOTE in line]
    assert len(notes) == 1, notes
    assert notes[0].endswith(
        f'spans iterations 0..{2 * ITERS} (T_max {2 * ITERS}), this '
        f"config's 0..{4 * ITERS} (T_max {4 * ITERS}); continuing on the "
        f"config's at step {2 * ITERS}: lr {cosine(2 * ITERS, 16):.4g}")


def test_mmengines_cosine_stays_at_its_last_value(tmp_path):
    """The control: mmengine's scheduler takes its length from the
    checkpoint and keeps the last learning rate for every new epoch."""
    first, _ = train(tmp_path, 2, kind='CosineAnnealingLR')
    resumed, _ = train(tmp_path, 4, kind='CosineAnnealingLR', resume=True)
    assert resumed == [first[-1]] * (2 * ITERS)


def test_same_length_resumes_bit_for_bit(tmp_path):
    """Stopped after 2 of 4 epochs and resumed: the learning rates and the
    weights of 4 epochs straight, exactly, and no note in the log."""
    straight, ref = train(tmp_path / 'straight', 4)
    first, _ = train(tmp_path / 'resumed', 4, stop_after_epoch=2)
    second, runner = train(tmp_path / 'resumed', 4, resume=True)
    assert first + second == straight
    assert NOTE not in read_log(runner)
    for (name, a), b in zip(ref.model.state_dict().items(),
                            runner.model.state_dict().values()):
        assert torch.equal(a, b), name


WARMUP_CFG = 'configs/_base_/schedules/adamw_warmup_cosine_100e.py'


def warmup_train(work_dir, max_epochs, stop_after_epoch=None, **kw):
    """The toy run with the warm-up schedule of ``WARMUP_CFG`` (read from
    the shipped file); returns (learning rates, runner)."""
    import os.path as osp
    from mmengine.config import Config
    from tiny import REPO
    schedule = Config.fromfile(osp.join(REPO, WARMUP_CFG)).param_scheduler
    recorder = LrRecorder(stop_after_epoch)
    torch.manual_seed(0)
    runner = build_toy_runner(
        work_dir, model=ToyModel(), max_epochs=max_epochs,
        custom_hooks=[recorder], param_scheduler=schedule, **kw)
    runner.train()
    return recorder.lrs, runner


def test_warmup_then_cosine_and_resume_inside_the_warmup(tmp_path):
    """The fine-tuning schedule: over the first 2 epochs (8 iterations) a
    line from 1% of the learning rate towards it, then the cosine over the
    rest of the run, down to 1e-5 (the shipped file's floor); mmengine's
    ``LinearLR`` reaches the full rate at the warm-up's last iteration. Stopped
    after epoch 1 (inside the warm-up) and resumed: the same learning
    rates and weights as the run straight through."""
    straight, ref = warmup_train(tmp_path / 'straight', 5)
    warm = 2 * ITERS
    rest = 5 * ITERS - warm
    expected = [BASE * (0.01 + 0.99 * t / (warm - 1)) for t in range(warm)] + [
        1e-5 + (BASE - 1e-5) * (1 + math.cos(math.pi * t / rest)) / 2
        for t in range(rest)]
    assert straight == pytest.approx(expected, rel=1e-9)
    first, _ = warmup_train(tmp_path / 'resumed', 5, stop_after_epoch=1)
    second, runner = warmup_train(tmp_path / 'resumed', 5, resume=True)
    assert first + second == straight
    for (name, a), b in zip(ref.model.state_dict().items(),
                            runner.model.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize('max_epochs', [1, 2])
def test_a_run_no_longer_than_the_warmup_is_all_warmup(tmp_path, max_epochs):
    """A quick check of a fine-tuning config (``--epochs 1``): the cosine
    would start after the run ends, which mmengine refuses
    (``end <= begin``); the run is the warm-up's line, said in one line."""
    lrs, runner = warmup_train(tmp_path, max_epochs)
    warm = 2 * ITERS
    assert lrs == pytest.approx(
        [BASE * (0.01 + 0.99 * t / (warm - 1))
         for t in range(max_epochs * ITERS)], rel=1e-9)
    notes = [line for line in read_log(runner).splitlines()
             if 'param_scheduler: the cosine starts at step' in line]
    assert len(notes) == 1, notes
