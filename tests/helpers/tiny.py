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


# ---------------------------------------------------------------------------
# Segmentation: the demo's segmentation configs with the tiny backbone
# ---------------------------------------------------------------------------
TEST = osp.join(REPO, 'tools', 'test.py')
SEG_DEMO = {p: osp.join(REPO, 'configs', 'dbbd',
                        f'seg_pointnet_small_demo_{p}.py')
            for p in ('ft', 'lin', 'scratch')}
#: The tiny widths of the backbone alone (a segmentor has no
#: projection heads).
TINY_SEG_MODEL = dict(backbone=TINY_MODEL['backbone'])


def tiny_seg_cfg(data_root, work_dir, protocol='ft', max_epochs=1,
                 pretrained=None, **extra):
    """A demo segmentation config with the tiny backbone on the test data,
    validation and a checkpoint every epoch, ``pretrained`` set through
    the top-level key as tools/train.py does."""
    from mmengine.config import Config

    from dbbd.models.segmentors.config import apply_top_level
    cfg = Config.fromfile(SEG_DEMO[protocol])
    cfg.merge_from_dict(dict(
        model=TINY_SEG_MODEL,
        work_dir=str(work_dir),
        experiment_name=f'test_{uuid.uuid4().hex[:8]}',
        train_cfg=dict(max_epochs=max_epochs, val_interval=1),
        default_hooks=dict(checkpoint=dict(interval=1),
                           logger=dict(interval=1)),
        **extra))
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = data_root
    apply_top_level(cfg, pretrained=pretrained)
    return cfg
