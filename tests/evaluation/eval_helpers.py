"""Shared by the evaluation and export tests: the real small config with
tiny widths on the session's synthetic rooms, and predict outputs."""
import contextlib
import copy

import torch

from tiny import build_runner  # noqa: F401  (re-exported)
from tiny import tiny_cfg as _tiny_cfg


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
    """:func:`tiny.tiny_cfg`, one epoch by default."""
    return _tiny_cfg(data_root, work_dir, max_epochs, **extra)


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
