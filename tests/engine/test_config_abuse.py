"""Abusive configs fail in one line: an unknown key names the key, what
the class accepts and the close names; a width, temperature or sample
count that cannot work is refused by the constructor that gets it."""
import copy

import pytest
from mmengine.config import Config

from dbbd.registry import MODELS
from dbbd.utils.config_check import (ConfigError, accepted_parameters,
                                     check_config_types, check_config_values)
from tiny import SMALL


@pytest.fixture(scope='module')
def small():
    return Config.fromfile(SMALL)


def _with(cfg, **options):
    cfg = copy.deepcopy(cfg)
    cfg.merge_from_dict(options)
    return cfg


@pytest.mark.parametrize('key, value, owner, close', [
    ('model.backbone.encoder.hiden_dims', [1], 'PointNetEncoder',
     'hidden_dims'),
    ('model.loss.point_loss.num_sample', 8, 'PointLoss', 'num_samples'),
    ('model.backbone.propagatr', {}, 'DBBDTreeBackbone', 'propagator'),
    ('optim_wrapper.optimizer.betas2', 0.9, 'AdamW', 'betas'),
    ('train_dataloader.sampler.shufle', True, 'EpochSeedSampler', 'shuffle'),
    ('val_evaluator.0.num_clases', 20, 'ContrastiveLossMetric', None),
])
def test_unknown_key_names_it_the_parameters_and_close_matches(
        small, key, value, owner, close):
    if key.startswith('val_evaluator'):
        cfg = copy.deepcopy(small)
        cfg.val_evaluator[0]['num_clases'] = value
        key = 'val_evaluator[0].num_clases'
    else:
        cfg = _with(small, **{key: value})
    with pytest.raises(ConfigError) as info:
        check_config_types(cfg)
    msg = str(info.value)
    name = key.rsplit('.', 1)[-1]
    assert '\n' not in msg
    assert msg.startswith(f'{key}: {owner} has no parameter {name!r}; ')
    cls = MODELS.get(owner)
    if cls is not None:  # the accepted list is the constructor's
        assert msg.endswith('it accepts ' +
                            ', '.join(accepted_parameters(cls)))
    if close:
        assert f'did you mean {close!r}' in msg


def test_unknown_type_is_one_whole_sentence(small):
    """The exact line: key, value, registry, close names, how to register
    a module of one's own (every bracket closed)."""
    with pytest.raises(ConfigError) as info:
        check_config_types(_with(
            small, **{'model.backbone.encoder.type': 'PointNetEncodr'}))
    assert str(info.value) == (
        "model.backbone.encoder: type 'PointNetEncodr' is not in the "
        "'model' registry; did you mean 'PointNetEncoder', "
        "'TwoStagePointNetEncoder', 'PointSegmentor'? (a module of your own "
        "needs "
        "custom_imports = dict(imports=['your.module']) in the config)")


@pytest.mark.parametrize('key, typo', [
    ('custom_hooks.0.priority', 'custom_hooks.0.priorty'),
    ('optim_wrapper.paramwise_cfg', 'optim_wrapper.paramwise_cfgg'),
])
def test_keys_the_builders_consume_are_accepted(small, key, typo):
    """``priority`` (taken by ``Runner.register_hook``) and ``paramwise_cfg``
    (by the optimizer constructor) are no constructor's parameters, yet
    valid; the same place with a typo is still refused."""
    value = 'LOWEST' if 'priority' in key else dict(norm_decay_mult=0.0)
    check_config_types(_with(small, **{key: value}))
    with pytest.raises(ConfigError) as info:
        check_config_types(_with(small, **{typo: value}))
    name = typo.rsplit('.', 1)[-1]
    assert f"has no parameter {name!r}" in str(info.value)


def test_accepted_parameters_look_through_forwarding_only():
    from dbbd.engine import ResumableEarlyStoppingHook, SafeCheckpointHook
    from mmengine.hooks import EarlyStoppingHook
    # (*args, **kwargs) forwarding: mmengine's parameters
    assert accepted_parameters(ResumableEarlyStoppingHook) == \
        accepted_parameters(EarlyStoppingHook)
    assert 'patience' in accepted_parameters(EarlyStoppingHook)
    # mmengine's CheckpointHook takes **kwargs of its own: unknowable
    assert accepted_parameters(SafeCheckpointHook) is None


@pytest.mark.parametrize('cfg, message', [
    (dict(type='PointNetEncoder', in_channels=3, hidden_dims=[]),
     'PointNetEncoder: hidden_dims must be a non-empty list of positive '
     'ints, got []'),
    (dict(type='PointNetEncoder', in_channels=3, hidden_dims=[0]),
     'PointNetEncoder: hidden_dims must be a non-empty list of positive '
     'ints, got [0]'),
    (dict(type='PointNetEncoder', in_channels=3, out_channels=0),
     'PointNetEncoder: out_channels must be a positive int, got 0'),
    (dict(type='MLPPropagator', in_channels=8, hidden_channels=0),
     'MLPPropagator: hidden_channels must be a positive int, got 0'),
    (dict(type='PointLoss', temperature=0),
     'PointLoss: temperature must be a finite number > 0, got 0'),
    (dict(type='PointLoss', num_samples=0),
     'PointLoss: num_samples must be a positive int, got 0'),
    (dict(type='RegionLoss', temperature=float('nan')),
     'RegionLoss: temperature must be a finite number > 0, got nan'),
    (dict(type='ProjectionHead', in_channels=8, out_channels=0),
     'MLP: hidden_channels must be a list of positive ints, got [0]'),
    (dict(type='Aggregator', channels=0),
     'Aggregator: channels must be a positive int, got 0'),
])
def test_constructors_refuse_values_that_cannot_work(cfg, message):
    with pytest.raises(ConfigError) as info:
        MODELS.build(cfg)
    assert str(info.value) == message


def test_model_hidden_channels_is_checked_with_the_config(small):
    with pytest.raises(ConfigError,
                       match=r'^model.backbone.hidden_channels: got 0 '
                       r'\(int\); expected a positive int$'):
        check_config_values(
            _with(small, **{'model.backbone.hidden_channels': 0}))


@pytest.mark.parametrize('term, message', [
    (dict(type='LovaszSoftmaxLos'),
     "model.losses[1]: type 'LovaszSoftmaxLos' is not in the 'model' "
     "registry; did you mean 'LovaszSoftmaxLoss'"),
    (dict(type='LovaszSoftmaxLoss', loss_weigth=1.0),
     "model.losses[1].loss_weigth: LovaszSoftmaxLoss has no parameter "
     "'loss_weigth'; did you mean 'loss_weight'"),
])
def test_segmentation_loss_terms_are_checked_with_the_config(term, message):
    """class_weight='auto' and a list of loss terms pass the checks of a
    segmentation config; a misspelt term or key is refused in one line."""
    from tiny import SEG_DEMO
    seg = Config.fromfile(SEG_DEMO['scratch'])
    seg.model.class_weight = 'auto'
    seg.model.losses = [dict(type='SegCrossEntropyLoss', loss_weight=1.0),
                        dict(type='LovaszSoftmaxLoss', loss_weight=1.0)]
    check_config_types(seg)
    check_config_values(seg)
    seg.model.losses[1] = term
    with pytest.raises(ConfigError) as info:
        check_config_types(seg)
    assert str(info.value).startswith(message)
    assert '\n' not in str(info.value)
