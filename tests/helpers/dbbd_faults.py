"""Test-only helpers: fault-injection hooks and ``tools/train.py`` runners.

Imported two ways, always under the top-level name ``dbbd_faults``:

- by the tests, after putting this folder on ``sys.path``
  (:data:`HELPERS_DIR`);
- by a ``tools/train.py`` subprocess, through ``custom_imports`` in a child
  config written by :func:`write_config` (the subprocess gets this folder on
  ``PYTHONPATH``). Importing it registers the hooks below in DBBD's
  ``HOOKS``.

The hooks make a training process stop *at a chosen point* so that a test
can ``SIGKILL`` it there: each writes a marker file once it has reached the
point, then sleeps. Nothing here is used outside ``tests/``.
"""
import glob
import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

from mmengine.hooks import Hook

from dbbd.registry import HOOKS

from tiny import HELPERS_DIR, REPO, SMALL, TINY_MODEL, TRAIN  # noqa: F401

#: Logged scalars that measure wall time, not training: never compared.
TIMING_KEYS = ('time', 'data_time', 'eta')

# ---------------------------------------------------------------------------
# Fault-injection hooks (run inside the training process)
# ---------------------------------------------------------------------------


def _touch(path, text=''):
    with open(path, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


@HOOKS.register_module(force=True)
class PauseAtIterHook(Hook):
    """Before iteration ``batch_idx`` (0-based) of epoch ``epoch``
    (1-based, as logged), write ``marker`` and sleep ``sleep`` seconds.

    With ``batch_idx=1`` the first iteration of the epoch has run (and was
    logged with ``logger.interval=1``): the process is killed in the middle
    of the epoch, with weights that no checkpoint holds.
    """

    priority = 'LOWEST'

    def __init__(self, marker, epoch=2, batch_idx=1, sleep=600):
        self.marker = marker
        self.epoch = epoch
        self.batch_idx = batch_idx
        self.sleep = sleep

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if runner.epoch + 1 == self.epoch and batch_idx == self.batch_idx:
            _touch(self.marker, f'epoch {self.epoch} iter {runner.iter}\n')
            time.sleep(self.sleep)


@HOOKS.register_module(force=True)
class StopAfterEpochHook(Hook):
    """End training after epoch ``epoch`` (1-based) as an interruption
    would, the config unchanged: its validation and checkpoint complete,
    ``max_epochs`` (and with it the learning-rate schedule) stays that of
    the whole run."""

    def __init__(self, epoch=2):
        self.epoch = epoch

    def after_train_epoch(self, runner):
        # runner.epoch is still the 0-based index of the epoch just run
        if runner.epoch + 1 == self.epoch:
            runner.train_loop.stop_training = True


@HOOKS.register_module(force=True)
class PauseInValidationHook(Hook):
    """Write ``marker`` and sleep ``sleep`` seconds in the validation after
    epoch ``epoch`` (1-based, as logged): after validation batch
    ``batch_idx`` (0-based) has run, before the metrics are computed; or,
    with ``batch_idx=None``, as the validation starts, i.e. after that
    epoch's checkpoint was written and before any of its validation ran."""

    priority = 'LOWEST'

    def __init__(self, marker, epoch=2, batch_idx=None, sleep=600):
        self.marker = marker
        self.epoch = epoch
        self.batch_idx = batch_idx
        self.sleep = sleep

    def _pause(self, runner, where):
        _touch(self.marker, f'epoch {runner.epoch} {where}\n')
        time.sleep(self.sleep)

    def before_val(self, runner):
        if self.batch_idx is None and runner.epoch == self.epoch:
            self._pause(runner, 'before validation')

    def after_val_iter(self, runner, batch_idx, data_batch=None,
                       outputs=None):
        if runner.epoch == self.epoch and batch_idx == self.batch_idx:
            self._pause(runner, f'after validation batch {batch_idx}')


@HOOKS.register_module(force=True)
class PauseInCheckpointWriteHook(Hook):
    """Freeze the process half-way through writing a checkpoint file.

    When the ``occurrence``-th checkpoint of epoch ``epoch`` is about to be
    written (``before_save_checkpoint``; 1 is the regular ``epoch_N.pth``, 2
    the best checkpoint when that epoch improves it, ...), the next
    ``LocalBackend.put`` -- mmengine's actual file write -- writes only the
    first half of the bytes to its file, ``fsync`` s it, writes ``marker``
    (holding the path of the partial file) and sleeps. A kill then lands
    while the (temporary) file is partially written.
    """

    priority = 'LOWEST'

    def __init__(self, marker, epoch=2, occurrence=1, sleep=600):
        self.marker = marker
        self.epoch = epoch
        self.occurrence = occurrence
        self.sleep = sleep
        self._seen = 0

    def before_save_checkpoint(self, runner, checkpoint):
        if checkpoint.get('meta', {}).get('epoch') != self.epoch:
            return
        self._seen += 1
        if self._seen != self.occurrence:
            return
        from mmengine.fileio.backends import LocalBackend
        original = LocalBackend.put
        marker, sleep = self.marker, self.sleep

        def put_half_then_sleep(backend, obj, filepath):
            LocalBackend.put = original  # one shot
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
                f.flush()
                os.fsync(f.fileno())
            _touch(marker, f'{filepath}\n{len(obj)}\n')
            time.sleep(sleep)
            raise RuntimeError('PauseInCheckpointWriteHook: not killed')

        LocalBackend.put = put_half_then_sleep


# ---------------------------------------------------------------------------
# Driving tools/train.py (run inside pytest)
# ---------------------------------------------------------------------------


def write_config(path, data_root, num_workers=0, persistent_workers=False,
                 max_epochs=4, custom_hooks=(), model=None):
    """Write a child of the small config: tiny widths, ``data_root``,
    checkpoint, validation and log line every epoch / iteration, raw
    (window 1) logged losses, local JSON scalars only (no TensorBoard, for
    speed). ``custom_hooks`` are added to the base config's (early
    stopping) and this module is imported when any are given; ``model``
    (a dict) is merged into the tiny model's settings."""
    from mmengine.config import Config
    base_hooks = list(Config.fromfile(SMALL).to_dict().get('custom_hooks',
                                                         []))
    lines = [
        f'_base_ = [{SMALL!r}]',
        f'model = {dict(TINY_MODEL, **(model or {}))!r}',
        f'train_dataloader = dict(num_workers={num_workers}, '
        f'persistent_workers={persistent_workers}, '
        f'dataset=dict(data_root={data_root!r}))',
        f'val_dataloader = dict(dataset=dict(data_root={data_root!r}))',
        f'train_cfg = dict(max_epochs={max_epochs}, val_interval=1)',
        'default_hooks = dict(checkpoint=dict(interval=1), '
        'logger=dict(interval=1))',
        "visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])",
        'log_processor = dict(window_size=1)',
    ]
    if custom_hooks:
        lines.append("custom_imports = dict(imports=['dbbd_faults'], "
                     'allow_failed_imports=False)')
        lines.append(f'custom_hooks = {base_hooks + list(custom_hooks)!r}')
    with open(path, 'w') as f:
        f.write('\n'.join(lines) + '\n')
    return str(path)


def train_env():
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    env['PYTHONPATH'] = os.pathsep.join(
        p for p in (HELPERS_DIR, env.get('PYTHONPATH')) if p)
    return env


def run_train(*args, timeout=180):
    """``tools/train.py ARGS`` to completion (killed after ``timeout``)."""
    return subprocess.run([sys.executable, TRAIN, *args], cwd=REPO,
                          env=train_env(), capture_output=True, text=True,
                          timeout=timeout)


def start_train(log_path, *args):
    """Start ``tools/train.py ARGS`` in its own process group, its output
    going to ``log_path`` (a pipe could fill up and block it)."""
    log = open(log_path, 'w')
    try:
        return subprocess.Popen([sys.executable, TRAIN, *args], cwd=REPO,
                                env=train_env(), stdout=log,
                                stderr=subprocess.STDOUT,
                                start_new_session=True)
    finally:
        log.close()  # the child holds its own descriptor


def kill_group(proc, timeout=30):
    """SIGKILL the process group of ``proc`` (loader workers included) and
    reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=timeout)


def wait_for_marker(proc, marker, log_path, timeout=120):
    """Block until ``marker`` exists; fail with the log tail if the process
    ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not osp.exists(marker):
        if proc.poll() is not None:
            raise AssertionError(
                f'training exited ({proc.returncode}) before reaching the '
                f'fault point:\n{_tail(log_path)}')
        if time.monotonic() > deadline:
            raise AssertionError(
                f'fault point not reached in {timeout} s:\n{_tail(log_path)}')
        time.sleep(0.05)
    with open(marker) as f:
        return f.read()


def _tail(path, n=3000):
    try:
        with open(path, errors='replace') as f:
            return f.read()[-n:]
    except OSError:
        return '<no log>'


def read_scalars(work_dir):
    """Logged scalars of every run in ``work_dir`` (``*/vis_data/
    scalars.json``, runs in order), without the timing ones.

    Returns:
        dict: ``{'train': {step: {key: value}}, 'val': {...}}``. A step
        logged twice (a run killed mid-epoch, then resumed) must have been
        logged with the same values.
    """
    out = {'train': {}, 'val': {}}
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data',
                                      'scalars.json')))
    assert files, f'no scalars.json under {work_dir}'
    for path in files:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                rec = json.loads(line)
                mode = 'val' if any(k.startswith('val/')
                                    for k in rec) else 'train'
                step = rec.pop('step')
                rec = {
                    k: v for k, v in rec.items()
                    if k.rsplit('/', 1)[-1] not in TIMING_KEYS
                }
                prev = out[mode].setdefault(step, rec)
                assert prev == rec, (mode, step, prev, rec)
    return out
