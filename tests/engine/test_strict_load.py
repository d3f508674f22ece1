"""``StrictLoadHook`` / ``check_checkpoint``: weights that do not fit the
model fail with the full list of mismatches, nothing is loaded partly, and
a newer checkpoint format is refused."""
import copy
import os.path as osp
from collections import OrderedDict

import pytest
import torch
from mmengine.hooks import Hook

from dbbd.engine import (CHECKPOINT_FORMAT_VERSION, CheckpointMismatchError,
                         CheckpointVersionError, check_checkpoint,
                         check_state_dict_matches)
from dbbd.engine.checkpoint import CheckpointLoadError, load_checkpoint_safe
from dbbd.engine.state_check import MAX_LISTED
from toy_runner import IterCounter, ToyModel

STRICT = dict(type='StrictLoadHook')


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """epoch_1.pth of a model with ``linear`` (4 -> 1) and ``extra``."""
    from toy_runner import build_toy_runner
    work_dir = str(tmp_path_factory.mktemp('strict'))
    build_toy_runner(
        work_dir, model=ToyModel(width=1, extra_name='extra'), max_epochs=1,
        model_cfg=dict(type='ToyModel', width=1, extra_name='extra')).train()
    return osp.join(work_dir, 'epoch_1.pth')


def _other_model_runner(make_toy_runner, work_dir, ckpt, **kw):
    """A model that differs in all three ways: ``linear`` is 4 -> 2 (shape),
    ``head`` is new (missing), ``extra`` is gone (unexpected)."""
    model = ToyModel(width=2, extra_name='head')
    runner = make_toy_runner(
        work_dir, model=model, max_epochs=2, load_from=ckpt,
        custom_hooks=[STRICT],
        model_cfg=dict(type='ToyModel', width=2, extra_name='head'), **kw)
    return runner, model


@pytest.mark.parametrize('resume', [False, True], ids=['load_from', 'resume'])
def test_mismatch_fails_with_the_list_and_loads_nothing(
        trained, tmp_path, make_toy_runner, resume):
    runner, model = _other_model_runner(
        make_toy_runner, tmp_path, trained, resume=resume)
    initial = copy.deepcopy(model.state_dict())
    with pytest.raises(CheckpointMismatchError) as info:
        runner.train()
    err = info.value
    lines = str(err).splitlines()
    assert lines[0] == err.summary == (
        f'weights in {trained} do not match the model (2 missing, 2 '
        'unexpected, 2 with another shape); nothing was loaded')
    assert '  missing in the checkpoint: head.weight' in lines
    assert '  missing in the checkpoint: head.bias' in lines
    assert '  unexpected in the checkpoint: extra.weight' in lines
    assert '  unexpected in the checkpoint: extra.bias' in lines
    assert ('  shape mismatch: linear.weight: checkpoint (1, 4), model '
            '(2, 4)') in lines
    assert '  shape mismatch: linear.bias: checkpoint (1,), model (2,)' in (
        lines)
    # the recorded model config says why
    hint = [line for line in lines if line.startswith('  hint:')]
    assert len(hint) == 1
    assert "extra_name: checkpoint 'extra', config 'head'" in hint[0]
    assert 'width: checkpoint 1, config 2' in hint[0]
    assert err.shape_mismatches == [('linear.weight', (1, 4), (2, 4)),
                                    ('linear.bias', (1, ), (2, ))]
    assert isinstance(err, CheckpointLoadError)
    # no partial load: every tensor as initialised
    for key, value in model.state_dict().items():
        assert torch.equal(value, initial[key]), key


class _Snapshot(Hook):
    """The model's tensors when training starts (after the load)."""

    def before_train(self, runner):
        self.state = copy.deepcopy(runner.model.state_dict())


def test_control_without_the_hook_mmengine_loads_partly(
        trained, tmp_path, make_toy_runner):
    """A control of mmengine's behaviour, not of DBBD's: mmengine alone
    warns, loads the tensors that fit and trains on the half-loaded
    model, which is what the hook prevents."""
    model = ToyModel(width=1, extra_name='head')
    initial = copy.deepcopy(model.state_dict())
    counter, snap = IterCounter(), _Snapshot()
    make_toy_runner(tmp_path, model=model, max_epochs=1, load_from=trained,
                    custom_hooks=[counter, snap]).train()
    saved = load_checkpoint_safe(trained)['state_dict']
    # linear.* came from the file, head.* (not in it) stayed as initialised
    for key in ('linear.weight', 'linear.bias'):
        assert torch.equal(snap.state[key], saved[key]), key
        assert not torch.equal(snap.state[key], initial[key]), key
    for key in ('head.weight', 'head.bias'):
        assert torch.equal(snap.state[key], initial[key]), key
    assert counter.iters == 4  # and a whole epoch trained on that


def test_matching_checkpoint_loads_and_trains(trained, tmp_path,
                                              make_toy_runner):
    model = ToyModel(width=1, extra_name='extra')
    counter = IterCounter()
    make_toy_runner(tmp_path, model=model, max_epochs=2, load_from=trained,
                    resume=True, custom_hooks=[STRICT, counter]).train()
    assert counter.iters == 4  # epoch 2 only


def test_newer_format_is_refused(trained, tmp_path, make_toy_runner):
    ckpt = load_checkpoint_safe(trained)
    ckpt['meta']['dbbd_format_version'] = CHECKPOINT_FORMAT_VERSION + 1
    path = str(tmp_path / 'future.pth')
    torch.save(ckpt, path)
    runner = make_toy_runner(
        tmp_path / 'wd', model=ToyModel(width=1, extra_name='extra'),
        load_from=path, custom_hooks=[STRICT])
    with pytest.raises(CheckpointVersionError) as info:
        runner.train()
    msg = str(info.value)
    assert '\n' not in msg and path in msg
    assert (f'format {CHECKPOINT_FORMAT_VERSION + 1}, but this DBBD reads '
            f'format {CHECKPOINT_FORMAT_VERSION} and older') in msg


def test_allowed_patterns_permit_a_deliberate_partial_load(
        trained, tmp_path, make_toy_runner):
    model = ToyModel(width=1, extra_name='head')
    runner = make_toy_runner(
        tmp_path, model=model, max_epochs=1, load_from=trained,
        custom_hooks=[
            dict(type='StrictLoadHook', allow_missing=[r'^head\.'],
                 allow_unexpected=[r'^extra\.'])
        ])
    runner.train()
    assert runner.epoch == 1


def test_a_single_pattern_string_is_refused():
    from dbbd.engine import StrictLoadHook
    with pytest.raises(TypeError, match='list of regular expressions'):
        StrictLoadHook(allow_missing='head')


def test_ddp_prefix_and_bare_state_dicts():
    model = ToyModel(width=1)
    prefixed = OrderedDict(
        (f'module.{k}', v) for k, v in model.state_dict().items())
    check_state_dict_matches(model, prefixed, 'x.pth')  # no error
    check_checkpoint(model, dict(model.state_dict()), 'bare.pth')
    with pytest.raises(CheckpointMismatchError) as info:
        check_checkpoint(model, {'meta': {}, 'state_dict': {}}, 'empty.pth')
    assert info.value.missing == ['linear.weight', 'linear.bias']


def test_long_lists_are_capped_in_the_message_only():
    model = torch.nn.Sequential(
        *[torch.nn.Linear(1, 1, bias=False) for _ in range(MAX_LISTED + 5)])
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict_matches(model, {}, 'x.pth')
    lines = str(info.value).splitlines()
    assert len(info.value.missing) == MAX_LISTED + 5
    assert lines[-1] == '  missing in the checkpoint: ... and 5 more'
    assert len(lines) == 1 + MAX_LISTED + 1
