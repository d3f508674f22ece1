"""Shared by the evaluation and export tests: the real small config with
tiny widths on the session's synthetic rooms, and predict outputs."""
import contextlib
import copy
import os.path as osp
import uuid

import torch
from mmengine.config import Config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SMALL = osp.join(REPO, 'configs/dbbd/dbbd_small_scannet.py')

TINY_MODEL = dict(
    hidden_channels=16,
    encoder=dict(hidden_dims=[8, 16], out_channels=16),
    propagator=dict(hidden_channels=16, out_channels=16),
    region_head=dict(out_channels=16),
    point_head=dict(out_channels=16),
    loss=dict(point_loss=dict(num_samples=128)),
)


@contextlib.contextmanager
def one_thread():
    """Torch on one thread: the tiny models here run faster so, and much
    faster when other processes compete for the cores (OpenMP threads wait
    for each other at every small op)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def tiny_cfg(data_root, work_dir, max_epochs=1, **extra):
    """The small config (base hooks and evaluators included) on the test
    data, with tiny widths."""
    cfg = Config.fromfile(SMALL)
    cfg.merge_from_dict(dict(
        model=TINY_MODEL,
        work_dir=str(work_dir),
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


def scene_dataset(cfg, split):
    """Every scene of ``split`` through the validation pipeline."""
    from dbbd.registry import DATASETS
    ds = copy.deepcopy(cfg.val_dataloader.dataset)
    ds.split = split
    ds.max_scenes = None
    return DATASETS.build(ds)


@torch.no_grad()
def feed_metric(metric, model, datasets):
    """Run ``mode='predict'`` scene by scene into ``metric.process``."""
    from dbbd.datasets import dbbd_collate
    model.eval()
    for ds in datasets:
        for i in range(len(ds)):
            batch = dbbd_collate([ds[i]])
            data = model.data_preprocessor(batch, False)
            metric.process(batch, model(data['inputs'], mode='predict'))
    return metric.evaluate(1)
