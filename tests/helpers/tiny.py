"""Tiny widths for fast tests: the real configs, with dims 8/16.

``tests/conftest.py`` puts this folder on ``sys.path``: ``import tiny``.
"""
import copy
import json
import os.path as osp
import uuid

HELPERS_DIR = osp.dirname(osp.abspath(__file__))
REPO = osp.dirname(osp.dirname(HELPERS_DIR))
TRAIN = osp.join(REPO, 'tools', 'train.py')
FULL = osp.join(REPO, 'configs', 'dbbd', 'dbbd_scannet.py')
SMALL = osp.join(REPO, 'configs', 'dbbd', 'dbbd_small_scannet.py')
DEMO = osp.join(REPO, 'configs', 'dbbd', 'dbbd_small_demo.py')

#: Model overrides on top of small mode: an iteration takes milliseconds.
TINY_MODEL = dict(
    backbone=dict(
        hidden_channels=16,
        encoder=dict(hidden_dims=[8, 16], out_channels=16),
        propagator=dict(hidden_channels=16, out_channels=16)),
    region_head=dict(out_channels=16),
    point_head=dict(out_channels=16),
    loss=dict(point_loss=dict(num_samples=128)),
)


def _flat(d, prefix):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f'{prefix}{k}.')
        else:
            yield f'{prefix}{k}', v


def cfg_options(model=TINY_MODEL):
    """``TINY_MODEL`` as ``--cfg-options`` arguments of tools/train.py."""
    return [f'{k}={json.dumps(v, separators=(",", ":"))}'
            for k, v in _flat(model, 'model.')]


def tiny_cfg(data_root, work_dir, max_epochs=2, **extra):
    """The small config (its hooks and evaluators included) on the test
    data, with tiny widths, validation and a checkpoint every epoch."""
    from mmengine.config import Config
    cfg = Config.fromfile(SMALL)
    cfg.merge_from_dict(dict(
        model=TINY_MODEL,
        work_dir=str(work_dir),
        # Runners built in the same second would share a MessageHub.
        experiment_name=f'test_{uuid.uuid4().hex[:8]}',
        train_cfg=dict(max_epochs=max_epochs, val_interval=1),
        default_hooks=dict(checkpoint=dict(interval=1),
                           logger=dict(interval=1)),
        **extra))
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = data_root
    return cfg


def build_runner(cfg):
    import dbbd.engine  # noqa: F401  safe loading, hooks
    from mmengine.runner import Runner
    return Runner.from_cfg(copy.deepcopy(cfg))
