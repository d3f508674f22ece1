"""Exact resume: 4 epochs straight == 2 epochs, stop, resume to 4, bit for
bit (weights, AdamW and scheduler state, message hub, logged losses).

Covers every source of randomness and state of a run: shuffle order
(``EpochSeedSampler``, seed + epoch), augmentations (seeded by seed, epoch,
scene index and view, so worker count and process RNG do not matter), the
loss's point subsample (seeded by the batch's ``sample_seed``), AdamW
moments, the cosine scheduler, and the message hub's history (the logged
losses are averages over it). The model has no dropout; its scatter ops
(``index_add_``, ``scatter_add_``, ``scatter_reduce_``) are deterministic on
CPU, so no ``deterministic=True`` is needed.

In-process runs (mmengine ``Runner``) with 0 and 2 loader workers
(persistent or not), and one run through ``tools/train.py --resume`` as a
real subprocess.
"""
import os.path as osp
import uuid

import numpy as np
import pytest
import torch
from mmengine.hooks import Hook

import dbbd_faults

ITERS_PER_EPOCH = 2  # 4 demo scenes, batch 2
TIMING = dbbd_faults.TIMING_KEYS


class _IterRecorder(Hook):
    """Records the (epoch, batch_idx) of every training iteration run."""

    def __init__(self):
        self.seen = []

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.seen.append((runner.epoch + 1, batch_idx))


def _train_in_process(cfg_path, work_dir, max_epochs, resume=False,
                      stop_after=None):
    import dbbd.engine  # noqa: F401  safe loading, hooks
    from mmengine.config import Config
    from mmengine.runner import Runner
    cfg = Config.fromfile(cfg_path)
    cfg.work_dir = str(work_dir)
    cfg.train_cfg.max_epochs = max_epochs
    cfg.resume = resume
    # MessageHub, logger and visualizer are global instances by name.
    cfg.experiment_name = f'exact_resume_{uuid.uuid4().hex[:8]}'
    runner = Runner.from_cfg(cfg)
    recorder = _IterRecorder()
    runner.register_hook(recorder)
    if stop_after is not None:
        runner.register_hook(dbbd_faults.StopAfterEpochHook(stop_after))
    runner.train()
    # Stop persistent loader workers now: left to the garbage collector,
    # the iterator's queues can be finalised first and each worker then
    # costs a 5 s join timeout.
    iterator = getattr(runner.train_dataloader, '_iterator', None)
    if iterator is not None and hasattr(iterator, '_shutdown_workers'):
        iterator._shutdown_workers()
    result = dict(epoch=runner.epoch, iter=runner.iter,
                  state_dict=runner.model.state_dict())
    return result, recorder.seen


def _iters(epochs):
    return [(e, b) for e in epochs for b in range(ITERS_PER_EPOCH)]


# -- comparison --------------------------------------------------------------


def _assert_equal_tree(a, b, where):
    """Recursive bit-for-bit equality of checkpoint parts."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor), where
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b), f'{where} differs'
    elif isinstance(a, np.ndarray):
        assert np.array_equal(a, b), f'{where} differs'
    elif isinstance(a, dict):
        assert set(a) == set(b), f'{where}: keys {set(a) ^ set(b)}'
        for k in a:
            _assert_equal_tree(a[k], b[k], f'{where}.{k}')
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal_tree(x, y, f'{where}[{i}]')
    else:
        assert a == b, f'{where}: {a!r} != {b!r}'


def _hub_scalars(hub_state):
    """Training/validation histories of a checkpoint's message hub, without
    the timing ones: ``{key: (values, counts)}``."""
    return {
        k: tuple(np.asarray(x) for x in buf.data)
        for k, buf in hub_state['log_scalars'].items()
        if k.rsplit('/', 1)[-1] not in TIMING
    }


def assert_same_run(work_a, work_b, last_epoch=4):
    """The two work dirs hold bit-identical final checkpoints and logged
    scalars."""
    from dbbd.engine import load_checkpoint_safe
    ckpt = f'epoch_{last_epoch}.pth'
    a = load_checkpoint_safe(osp.join(work_a, ckpt))
    b = load_checkpoint_safe(osp.join(work_b, ckpt))
    _assert_equal_tree(a['state_dict'], b['state_dict'], 'state_dict')
    _assert_equal_tree(a['optimizer'], b['optimizer'], 'optimizer')
    assert a['optimizer']['state'], 'no AdamW moments saved'
    _assert_equal_tree(a['param_schedulers'], b['param_schedulers'],
                       'param_schedulers')
    for k in ('epoch', 'iter', 'seed'):
        assert a['meta'][k] == b['meta'][k], k
    ha, hb = _hub_scalars(a['message_hub']), _hub_scalars(b['message_hub'])
    assert set(ha) == set(hb)
    assert len(ha['train/loss'][0]) == last_epoch * ITERS_PER_EPOCH
    _assert_equal_tree(ha, hb, 'message_hub.log_scalars')
    info_a, info_b = (x['message_hub']['runtime_info'] for x in (a, b))
    assert info_a['best_score'] == info_b['best_score']
    assert info_a['best_ckpt'] == info_b['best_ckpt']

    sa, sb = dbbd_faults.read_scalars(work_a), dbbd_faults.read_scalars(
        work_b)
    n = last_epoch * ITERS_PER_EPOCH
    assert sorted(sa['train']) == list(range(1, n + 1))
    assert sorted(sa['val']) == list(range(1, last_epoch + 1))
    assert sa == sb  # every logged loss, part, lr, per iteration
    losses = [sa['train'][s]['train/loss'] for s in range(1, n + 1)]
    assert len(set(losses)) == n  # raw values, really per iteration
    lrs = [sa['train'][s]['train/lr'] for s in range(1, n + 1)]
    assert lrs == sorted(lrs, reverse=True) and lrs[0] > lrs[-1]


# -- in-process --------------------------------------------------------------

VARIANTS = {
    'workers0': dict(num_workers=0, persistent_workers=False),
    'workers2': dict(num_workers=2, persistent_workers=False),
    # DBBD with an EMA teacher: the teacher's weights and its update count
    # (teacher_step) come back with the checkpoint
    'ema': dict(num_workers=0, persistent_workers=False,
                model=dict(ema_momentum=0.9)),
}


@pytest.fixture(scope='module')
def runs(demo_root, tmp_path_factory):
    """Lazily run, once each: ``('straight', variant)`` 4 epochs, and
    ``('resumed', variant)`` the same run stopped after epoch 2, then
    resumed to 4."""
    cache = {}

    def get(kind, name):
        key = (kind, name)
        if key not in cache:
            tmp = tmp_path_factory.mktemp(f'{kind}_{name}')
            cfg = dbbd_faults.write_config(tmp / 'cfg.py', demo_root,
                                           **VARIANTS[name])
            work = tmp / 'work'
            if kind == 'straight':
                result, seen = _train_in_process(cfg, work, 4)
                seen = [seen]
            else:
                _, seen_first = _train_in_process(cfg, work, 4,
                                                  stop_after=2)
                result, seen_resumed = _train_in_process(
                    cfg, work, 4, resume=True)
                seen = [seen_first, seen_resumed]
            cache[key] = dict(work=str(work), result=result, seen=seen)
        return cache[key]

    return get


@pytest.mark.parametrize('variant', list(VARIANTS))
def test_resume_in_process_is_bit_exact(runs, variant):
    """2 epochs, stop, resume to 4 == 4 epochs straight (the reference is
    the 0-worker run: results do not depend on the worker count; the EMA
    teacher's against its own straight run)."""
    ref = runs('straight', 'ema' if variant == 'ema' else 'workers0')
    res = runs('resumed', variant)
    assert ref['seen'] == [_iters([1, 2, 3, 4])]
    # the second run resumed after epoch 2, it did not train again from 1
    assert res['seen'] == [_iters([1, 2]), _iters([3, 4])]
    r_ref, r_res = ref['result'], res['result']
    assert r_ref['epoch'] == r_res['epoch'] == 4
    assert r_ref['iter'] == r_res['iter'] == 4 * ITERS_PER_EPOCH
    sd_a, sd_b = r_ref['state_dict'], r_res['state_dict']
    assert set(sd_a) == set(sd_b)
    if variant == 'ema':
        assert int(sd_b['teacher_step']) == 4 * ITERS_PER_EPOCH
        teacher = [k for k in sd_b if k.startswith('teacher_backbone.')]
        assert teacher and not all(
            torch.equal(sd_b[k], sd_b[k[len('teacher_'):]])
            for k in teacher)  # a teacher of its own, not the student
    for k in sd_a:
        assert torch.equal(sd_a[k], sd_b[k]), k
    assert_same_run(ref['work'], res['work'])


# -- through tools/train.py --------------------------------------------------


def test_resume_through_train_script_is_bit_exact(runs, demo_root, tmp_path):
    """tools/train.py with 2 persistent workers: the 4-epoch run stopped
    after epoch 2, then --resume, equals the in-process 4-epoch run with 0
    workers (so neither the worker count nor the process changes
    training)."""
    workers = dict(num_workers=2, persistent_workers=True)
    stopping = dbbd_faults.write_config(
        tmp_path / 'stop.py', demo_root,
        custom_hooks=[dict(type='StopAfterEpochHook', epoch=2)], **workers)
    cfg = dbbd_faults.write_config(tmp_path / 'cfg.py', demo_root, **workers)
    straight = runs('straight', 'workers0')['work']
    resumed = str(tmp_path / 'resumed')
    r = dbbd_faults.run_train(stopping, '--work-dir', resumed)
    assert r.returncode == 0, r.stderr[-3000:]
    assert not osp.exists(osp.join(resumed, 'epoch_3.pth'))
    r = dbbd_faults.run_train(cfg, '--work-dir', resumed, '--resume')
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-3000:]
    assert 'resumed epoch: 2' in out.lower()
    assert 'Epoch(train) [1]' not in out and 'Epoch(train) [2]' not in out
    assert 'Epoch(train) [4]' in out
    assert_same_run(straight, resumed)
