"""``check_config_values``: a wrong value type in a common key fails in one
line naming the key, the value and what is expected."""
import copy
import glob
import os
import os.path as osp

import pytest
from mmengine.config import Config

from dbbd.utils.config_check import ConfigError, check_config_values

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

VALID = dict(
    train_cfg=dict(type='EpochBasedTrainLoop', max_epochs=10, val_interval=1),
    train_dataloader=dict(
        batch_size=2, num_workers=2,
        dataset=dict(type='DBBDDataset', max_scenes=None, max_depth=4)),
    val_dataloader=dict(
        batch_size=1, num_workers=0,
        dataset=dict(type='DBBDDataset', max_scenes=8, max_depth=None)),
    optim_wrapper=dict(
        type='OptimWrapper',
        optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01)),
    randomness=dict(seed=0),
    default_hooks=dict(checkpoint=dict(type='SafeCheckpointHook',
                                       interval=10)),
)


def with_value(key, value):
    cfg = copy.deepcopy(VALID)
    node = cfg
    *parents, last = key.split('.')
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return Config(cfg)


LR = 'a finite number in [0, 10]'

# (key, bad value, expected description in the message)
BAD = [
    ('train_cfg.max_epochs', 0, 'a positive int'),
    ('train_cfg.max_epochs', 10.0, 'a positive int'),
    ('train_cfg.max_epochs', True, 'a positive int'),
    ('train_cfg.max_iters', -5, 'a positive int'),
    ('train_cfg.val_interval', '5', 'a positive int'),
    ('train_dataloader.batch_size', 0, 'a positive int'),
    ('val_dataloader.batch_size', 2.5, 'a positive int'),
    ('test_dataloader.batch_size', None, 'a positive int'),
    ('train_dataloader.num_workers', -1, 'an int >= 0'),
    ('val_dataloader.num_workers', '4', 'an int >= 0'),
    ('train_dataloader.dataset.max_scenes', 0, 'a positive int or None'),
    ('val_dataloader.dataset.max_scenes', '8', 'a positive int or None'),
    ('train_dataloader.dataset.max_depth', -1, 'an int >= 0 or None'),
    ('train_dataloader.dataset.max_depth', 3.5, 'an int >= 0 or None'),
    ('optim_wrapper.optimizer.lr', '1e-3', LR),
    ('optim_wrapper.optimizer.lr', -0.1, LR),
    ('optim_wrapper.optimizer.lr', None, LR),
    ('optim_wrapper.optimizer.lr', float('nan'), LR),
    ('optim_wrapper.optimizer.lr', float('inf'), LR),
    # AdamW's first step would overflow float32 (a traceback from torch)
    ('optim_wrapper.optimizer.lr', 1e38, LR),
    ('optim_wrapper.optimizer.lr', 11, LR),
    ('optim_wrapper.optimizer.weight_decay', float('inf'),
     'a finite number >= 0'),
    ('optim_wrapper.optimizer.weight_decay', 'none', 'a finite number >= 0'),
    ('optim_wrapper.optimizer.weight_decay', False, 'a finite number >= 0'),
    ('randomness.seed', '0', 'an int'),
    ('randomness.seed', None, 'an int'),
    ('randomness.seed', 1.5, 'an int'),
    ('default_hooks.checkpoint.interval', 0, 'a positive int (or -1'),
    ('default_hooks.checkpoint.interval', '10', 'a positive int (or -1'),
    ('model.class_weight', 'autox', "None, 'auto' or a list of finite "
     'numbers >= 0'),
    ('model.class_weight', [1.0, '2'], "None, 'auto' or a list"),
    ('model.class_weight', [1.0, float('nan')], "None, 'auto' or a list"),
    ('model.losses', dict(type='LovaszSoftmaxLoss'),
     'None or a non-empty list of loss configs'),
    ('model.losses', [], 'None or a non-empty list of loss configs'),
]


@pytest.mark.parametrize('key,value,expected', BAD,
                         ids=[f'{k}={v!r}' for k, v, _ in BAD])
def test_bad_value_names_key_value_and_expectation(key, value, expected):
    with pytest.raises(ConfigError) as info:
        check_config_values(with_value(key, value))
    msg = str(info.value)
    assert '\n' not in msg
    assert msg.startswith(
        f'{key}: got {value!r} ({type(value).__name__}); expected '
        f'{expected}')


@pytest.mark.parametrize('key,value', [
    ('optim_wrapper.optimizer.lr', '1e-3'),
    ('train_cfg.max_epochs', ' 100 '),
    ('default_hooks.checkpoint.interval', '10'),
])
def test_number_in_quotes_says_to_write_a_number(key, value):
    with pytest.raises(ConfigError) as info:
        check_config_values(with_value(key, value))
    name = key.rsplit('.', 1)[-1]
    assert str(info.value).endswith(
        f'write a number, without quotes: {name}={value.strip()}')


def test_bool_is_called_out():
    with pytest.raises(ConfigError, match='True is a bool, not a number'):
        check_config_values(with_value('train_dataloader.batch_size', True))


def test_huge_learning_rate_says_why():
    with pytest.raises(ConfigError) as info:
        check_config_values(with_value('optim_wrapper.optimizer.lr', 1e38))
    assert str(info.value) == (
        'optim_wrapper.optimizer.lr: got 1e+38 (float); expected a finite '
        'number in [0, 10]; learning rates are about 1e-4 to 1 (AdamW '
        '1e-3); a larger one overflows or diverges in the first steps')


def test_unseeded_run_explains_why():
    with pytest.raises(ConfigError, match='cannot be resumed exactly'):
        check_config_values(with_value('randomness.seed', None))


# (key, a value on the edge that is fine, the next one over it, refused)
EDGES = [
    ('train_cfg.max_epochs', 1, 0),
    ('optim_wrapper.optimizer.lr', 0, -1e-9),  # an int is a number
    ('optim_wrapper.optimizer.lr', 10, 10.5),
    ('optim_wrapper.optimizer.weight_decay', 0.0, -0.1),
    ('train_dataloader.num_workers', 0, -1),
    ('train_dataloader.dataset.max_depth', 0, -1),
    ('default_hooks.checkpoint.interval', -1, -2),
    ('default_hooks.checkpoint.interval', -1, 0),
    ('randomness.seed', -7, 1.5),
    ('model.class_weight', 'auto', 'Auto'),
    ('model.class_weight', [0.0, 2.5], [-0.1, 2.5]),
    ('model.class_weight', None, 0),
    ('model.losses', [dict(type='LovaszSoftmaxLoss')], ['LovaszSoftmaxLoss']),
]


@pytest.mark.parametrize('key, value, over', EDGES)
def test_edge_values_that_are_fine(key, value, over):
    check_config_values(with_value(key, value))
    with pytest.raises(ConfigError) as info:
        check_config_values(with_value(key, over))
    assert str(info.value).startswith(f'{key}: got {over!r}')


def test_valid_and_sparse_configs_pass():
    check_config_values(Config(VALID))
    # absent sections are left to their defaults ...
    check_config_values(Config(dict(model=dict(type='DBBD'))))
    check_config_values(Config(dict(test_dataloader=None,
                                    optim_wrapper=dict(type='X'))))
    # ... while a present one is still checked in a sparse config
    with pytest.raises(ConfigError, match=r'^optim_wrapper\.optimizer\.lr'):
        check_config_values(Config(dict(
            model=dict(type='DBBD'),
            optim_wrapper=dict(type='X', optimizer=dict(lr='1e-3')))))


#: The config families this project ships; configs a user adds elsewhere
#: (configs/my/) are not the project's to test.
SHIPPED_FAMILIES = ('_base_', 'dbbd', 'scans', 'scene_contrast', 'self_distill')


def shipped_configs():
    """The shipped configs: those git tracks under configs/ (a clone), else
    the files of the shipped families (an unpacked release). Either way,
    not whatever else lies in the folder."""
    import subprocess
    try:
        out = subprocess.run(
            ['git', 'ls-files', '--', 'configs/*.py'], cwd=REPO,
            capture_output=True, text=True, timeout=30, check=True).stdout
        tracked = sorted(osp.join(REPO, p) for p in out.split())
    except (OSError, subprocess.SubprocessError):
        tracked = []
    if tracked:
        return [p for p in tracked if osp.isfile(p)]
    return sorted(p for family in SHIPPED_FAMILIES for p in glob.glob(
        osp.join(REPO, 'configs', family, '**', '*.py'), recursive=True))


def family(path):
    """``'dbbd'`` for configs/dbbd/x.py, ``'_base_'`` for
    configs/_base_/models/x.py."""
    return osp.relpath(path, osp.join(REPO, 'configs')).split(os.sep)[0]


SHIPPED = shipped_configs()


def test_shipped_configs_are_the_projects_only():
    assert len(SHIPPED) >= 30
    families = {family(p) for p in SHIPPED}
    assert families == set(SHIPPED_FAMILIES), families


#: keys every shipped training config sets, so that the checks below read
#: real values rather than pass over absent ones
SHIPPED_KEYS = ('train_cfg.max_epochs', 'train_dataloader.batch_size',
                'train_dataloader.dataset.max_depth',
                'optim_wrapper.optimizer.lr', 'randomness.seed',
                'default_hooks.checkpoint.interval')


@pytest.mark.parametrize('path', SHIPPED, ids=osp.basename)
def test_shipped_configs_pass(path):
    from dbbd.apis.config import check_config
    from dbbd.datasets.formatting import check_feat_width
    from dbbd.datasets.formatting import _width_holders
    from dbbd.utils.config_check import _MISSING, _lookup
    cfg = Config.fromfile(path)
    # values, then every type registered and every key accepted, then the
    # segmentation datasets' arguments
    check_config(cfg)
    check_feat_width(cfg)
    if family(path) == '_base_':
        return  # a partial config: the leaves carry the rest
    missing = [k for k in SHIPPED_KEYS if _lookup(cfg, k) is _MISSING]
    assert not missing, f'{path} does not set {missing}'
    # the width check compared the loaders' feat_keys with a real width
    assert [h['in_channels'] for _, h in _width_holders(cfg)], path


@pytest.mark.parametrize('path', SHIPPED, ids=osp.basename)
def test_shipped_configs_top_level_keys_are_known(path):
    """Every top-level key of a shipped config is read by something or a
    variable the files use; a new one must join one of the two lists."""
    from dbbd.utils.config_check import (CONFIG_VARIABLES,
                                         READ_TOP_LEVEL_KEYS,
                                         check_top_level_keys)
    cfg = Config.fromfile(path)
    unknown = set(cfg.keys()) - READ_TOP_LEVEL_KEYS - CONFIG_VARIABLES
    assert not unknown, f'{path}: {sorted(unknown)}'
    check_top_level_keys(cfg, path, set(cfg.keys()))
