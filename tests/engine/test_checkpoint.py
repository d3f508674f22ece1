"""Safe checkpoint loading and ``SafeCheckpointHook``, with the tiny real
mmengine Runner of ``toy_runner.py`` (one Linear layer, random tensors,
CPU)."""
import copy
import hashlib
import os
import os.path as osp
import pickle
import re
import shutil
import zipfile

import numpy as np
import pytest
import torch
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import (CheckpointLoader, _load_checkpoint,
                                        load_from_local)

import dbbd.engine  # noqa: F401  registers the safe loader
from dbbd.engine.checkpoint import (CorruptCheckpointError,
                                    UnsafeCheckpointError,
                                    _restricted_getattr,
                                    find_latest_checkpoint,
                                    load_checkpoint_safe,
                                    load_from_local_safe, safe_globals_list)
from dbbd.engine.hooks.checkpoint_hook import SafeCheckpointHook, to_plain
from toy_runner import ToyModel, build_toy_runner, ckpt_files

# ---------------------------------------------------------------------------
# Toy training setup (toy_runner.py), with a scheduler and a model config
# ---------------------------------------------------------------------------


class StateRecorder(Hook):
    """Captures what the runner resumed, just before training continues."""

    def before_train(self, runner):
        self.epoch, self.iter = runner.epoch, runner.iter
        self.optim_state = copy.deepcopy(
            runner.optim_wrapper.optimizer.state_dict())
        self.sched_last_step = runner.param_schedulers[0].last_step


MODEL_CFG = dict(type='ToyModel', hidden=(4, 1), scale=np.float64(0.5))


def ckpt_hook(**kw):
    cfg = dict(type='dbbd.SafeCheckpointHook', interval=1)
    cfg.update(kw)
    return cfg


def make_runner(work_dir, hook, max_epochs=2, values=(3.0, 2.0, 1.0),
                **kw):
    """The toy runner (validation ``loss`` scripted by ``values``), with a
    MultiStepLR scheduler so that checkpoints hold scheduler state, and
    :data:`MODEL_CFG` as ``cfg.model``."""
    return build_toy_runner(
        work_dir, max_epochs=max_epochs, values=values, checkpoint=hook,
        model_cfg=MODEL_CFG,
        param_scheduler=dict(type='MultiStepLR', milestones=[1]), **kw)


def read_last(work_dir):
    with open(osp.join(work_dir, 'last_checkpoint')) as f:
        return f.read().strip()


def tmp_files(work_dir):
    return [n for n in os.listdir(work_dir) if n.endswith('.dbbd-tmp')]


def digest(folder):
    """{relative path: sha256 or None} of every file below ``folder``.

    Logs are left out of the hashes: mmengine appends a warning to the
    previous run's log when a metric is built before the new runner's
    logger exists.
    """
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = osp.join(root, name)
            out[osp.relpath(path, folder)] = None
            if name.endswith('.pth') or name == 'last_checkpoint':
                with open(path, 'rb') as f:
                    out[osp.relpath(path, folder)] = hashlib.sha256(
                        f.read()).hexdigest()
    return out


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """3 epochs, max_keep_ckpts=2, best by a falling ``loss``; every deletion
    is recorded with the state of the folder at that moment."""
    work_dir = str(tmp_path_factory.mktemp('trained'))
    events = []
    real_remove = os.remove

    def recording_remove(path, *a, **kw):
        path = os.fspath(path)
        if path.endswith('.pth') and osp.dirname(path) == work_dir:
            event = dict(
                name=osp.basename(path),
                present=set(os.listdir(work_dir)),
                last=read_last(work_dir))
            m = re.match(r'best_loss_epoch_(\d+)\.pth', event['name'])
            if m:
                newer = f'epoch_{int(m.group(1)) + 1}.pth'
                if newer in event['present']:
                    hub = load_checkpoint_safe(osp.join(
                        work_dir, newer))['message_hub']['runtime_info']
                    event['newer_best'] = hub['best_ckpt']
            events.append(event)
        return real_remove(path, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, 'remove', recording_remove)
        runner = make_runner(
            work_dir,
            ckpt_hook(max_keep_ckpts=2, save_best='loss', rule='less'),
            max_epochs=3)
        runner.train()
    return dict(work_dir=work_dir, events=events)


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def test_safe_loader_is_mmengines_local_loader():
    assert CheckpointLoader._get_checkpoint_loader(
        'work_dirs/x/epoch_1.pth') is load_from_local_safe
    assert CheckpointLoader._get_checkpoint_loader(
        '/abs/epoch_1.pth') is load_from_local_safe
    # URLs keep their own loaders
    assert CheckpointLoader._get_checkpoint_loader(
        'https://x/y.pth') is not load_from_local_safe


def test_config_type_resolves_in_dbbd_registry():
    from dbbd.registry import HOOKS
    hook = HOOKS.build(
        dict(type='SafeCheckpointHook', interval=10, max_keep_ckpts=3,
             save_best='loss', rule='less'))
    assert isinstance(hook, SafeCheckpointHook)
    assert hook.max_keep_ckpts == 3 and hook.save_best == ['loss']


def test_remote_backends_are_refused():
    with pytest.raises(ValueError, match='local folders only'):
        SafeCheckpointHook(interval=1, backend_args=dict(backend='petrel'))
    with pytest.raises(ValueError, match='not a local folder'):
        SafeCheckpointHook(interval=1, out_dir='s3://bucket/ckpts')


def test_allow_list_covers_a_real_checkpoint(trained):
    path = osp.join(trained['work_dir'], 'epoch_3.pth')
    unsafe = set(torch.serialization.get_unsafe_globals_in_checkpoint(path))
    # What mmengine 0.10.7 puts beyond torch's defaults; if this changes the
    # allow-list must be revisited.
    assert 'mmengine.logging.history_buffer.HistoryBuffer' in unsafe
    assert 'builtins.getattr' in unsafe
    assert {'numpy.ndarray', 'numpy.dtype'} <= unsafe
    with torch.serialization.safe_globals(safe_globals_list()):
        assert torch.serialization.get_unsafe_globals_in_checkpoint(
            path) == []
    # mmengine's own loader (torch 2.13 defaults to weights_only=True) fails
    # on it: the safe loader is what makes resume work.
    with pytest.raises(pickle.UnpicklingError):
        load_from_local(path, 'cpu')
    # The static scan misses the dtype classes needed by BUILD; a real load
    # checks them too.
    ckpt = load_checkpoint_safe(path)
    buf = ckpt['message_hub']['log_scalars']['train/loss']
    assert isinstance(buf, HistoryBuffer)
    assert buf.data[0].dtype == np.float64
    assert buf.data[1].dtype == np.int64
    assert buf.statistics('mean') == pytest.approx(buf.data[0].mean())
    assert isinstance(ckpt['message_hub']['runtime_info']['best_score'],
                      np.float64)
    # the allow-list lived in a context: nothing of it stays global
    left = set(torch.serialization.get_safe_globals())
    assert not left & set(safe_globals_list())


def test_meta_records_format_version_and_model_cfg(trained):
    ckpt = load_checkpoint_safe(osp.join(trained['work_dir'], 'epoch_3.pth'))
    meta = ckpt['meta']
    assert meta['dbbd_format_version'] == 1
    assert meta['model_cfg'] == dict(type='ToyModel', hidden=[4, 1],
                                     scale=0.5)
    assert type(meta['model_cfg']['scale']) is float
    best = load_checkpoint_safe(
        osp.join(trained['work_dir'], 'best_loss_epoch_3.pth'))
    assert best['meta']['dbbd_format_version'] == 1
    assert 'optimizer' not in best


def test_paths_are_relative(trained):
    work_dir = trained['work_dir']
    assert read_last(work_dir) == 'epoch_3.pth'
    info = load_checkpoint_safe(osp.join(
        work_dir, 'epoch_3.pth'))['message_hub']['runtime_info']
    assert info['last_ckpt'] == 'epoch_3.pth'
    assert info['best_ckpt'] == 'best_loss_epoch_3.pth'
    assert info['keep_ckpt_ids'] == [2, 3]
    assert find_latest_checkpoint(work_dir) == osp.join(
        work_dir, 'epoch_3.pth')


def test_malicious_checkpoint_is_refused(tmp_path, monkeypatch):
    marker = tmp_path / 'MARKER'

    class Evil:

        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'meta': Evil()}, path)
    monkeypatch.chdir(tmp_path)
    for load in (lambda: load_checkpoint_safe(path),
                 lambda: _load_checkpoint(str(path), map_location='cpu')):
        with pytest.raises(UnsafeCheckpointError) as info:
            load()
        msg = str(info.value)
        assert '\n' not in msg
        assert str(path) in msg
        assert 'system' in msg and 'allow-list' in msg
        assert not marker.exists()


def test_builtin_call_outside_allow_list_is_refused(tmp_path):

    class CallsEval:

        def __reduce__(self):
            return (eval, ('1 + 1', ))

    path = tmp_path / 'eval.pth'
    torch.save({'meta': CallsEval()}, path)
    with pytest.raises(UnsafeCheckpointError, match='`builtins.eval`'):
        load_checkpoint_safe(path)


def test_getattr_stand_in_only_returns_statistics(tmp_path):
    assert _restricted_getattr(HistoryBuffer, 'mean') is HistoryBuffer.mean

    class Sneaky:
        # register_statistics would let a file plant a callable on the class
        def __reduce__(self):
            return (getattr, (HistoryBuffer, 'register_statistics'))

    path = tmp_path / 'getattr.pth'
    torch.save({'meta': Sneaky()}, path)
    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_safe(path)
    assert "getattr(HistoryBuffer, 'register_statistics')" in str(info.value)
    assert str(path) in str(info.value)


def test_numpy_1x_module_paths_load(tmp_path):
    """numpy 1.x pickles ``numpy.core.multiarray``, 2.x
    ``numpy._core.multiarray``: a checkpoint from either must load under
    either. Rewrites the module path of a fresh file to the other one."""
    torch.save({'a': np.arange(3), 's': np.float64(2.5)}, tmp_path / 'a.pth')
    path = tmp_path / 'b.pth'
    paths = [b'numpy._core.multiarray', b'numpy.core.multiarray']
    with zipfile.ZipFile(tmp_path / 'a.pth') as src, zipfile.ZipFile(
            path, 'w', compression=zipfile.ZIP_STORED) as dst:
        for name in src.namelist():
            data = src.read(name)
            if name.endswith('data.pkl'):
                ours = paths[0] if paths[0] in data else paths[1]
                other = paths[1] if ours == paths[0] else paths[0]
                data = data.replace(ours, other)
            dst.writestr(name, data)
    assert other.decode() + '.scalar' in (
        torch.serialization.get_unsafe_globals_in_checkpoint(path))
    loaded = load_checkpoint_safe(path)
    assert loaded['a'].tolist() == [0, 1, 2] and loaded['s'] == 2.5


def _assert_corrupt(path, record=None):
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint_safe(path)
    msg = str(info.value)
    assert '\n' not in msg
    assert str(path) in msg and 'truncated or corrupt' in msg
    if record is not None:
        assert f'record {record} is damaged' in msg, msg
    return msg


@pytest.mark.filterwarnings('ignore:Detected pickle protocol')
def test_random_bytes_are_always_corrupt(tmp_path):
    """Seeded random files, also ones starting like a zip archive or like a
    legacy torch file so both parsers get garbage: always the one-line
    CorruptCheckpointError, whatever the unpickler raises."""
    from dbbd.engine.checkpoint import LEGACY_MAGIC, ZIP_MAGIC
    rng = np.random.default_rng(0)
    path = tmp_path / 'random.pth'
    for i in range(300):
        body = rng.integers(0, 256, int(rng.integers(0, 3000)),
                            dtype=np.uint8).tobytes()
        head = (b'', ZIP_MAGIC, LEGACY_MAGIC)[i % 3]
        path.write_bytes(head + body)
        _assert_corrupt(path)


def test_truncated_checkpoints_are_always_corrupt(trained, tmp_path):
    data = open(osp.join(trained['work_dir'], 'epoch_3.pth'), 'rb').read()
    path = tmp_path / 'epoch_3.pth'
    rng = np.random.default_rng(1)
    cuts = [0, 1, 4, len(data) - 1] + list(rng.integers(0, len(data), 200))
    for cut in cuts:
        path.write_bytes(data[:cut])
        _assert_corrupt(path)


def _records(path):
    """{record name: (first byte offset, length)} of a zip archive."""
    import struct
    out = {}
    raw = open(path, 'rb').read()
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name_len, extra_len = struct.unpack(
                '<HH', raw[info.header_offset + 26:info.header_offset + 30])
            start = info.header_offset + 30 + name_len + extra_len
            out[info.filename] = (start, info.compress_size)
    return out


def _same(a, b):
    """Recursive equality of loaded checkpoints (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.dtype == b.dtype
                and torch.equal(a, b))
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype
                and np.array_equal(a, b))
    if isinstance(a, dict):
        return (type(a) is type(b) and list(a) == list(b)
                and all(_same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(_same(x, y) for x, y in zip(a, b)))
    if isinstance(a, HistoryBuffer):
        return type(b) is HistoryBuffer and _same(vars(a), vars(b))
    return type(a) is type(b) and a == b


def test_a_flipped_byte_is_detected_or_harmless(trained, tmp_path):
    """Flip one byte: inside any record (tensor data, data.pkl, ...) it is
    always refused naming the record; anywhere else in the file it is
    refused or changes nothing that is loaded (timestamps, padding)."""
    src = osp.join(trained['work_dir'], 'epoch_3.pth')
    data = bytearray(open(src, 'rb').read())
    original = load_checkpoint_safe(src)
    path = tmp_path / 'epoch_3.pth'
    rng = np.random.default_rng(2)

    def flipped(pos):
        out = bytearray(data)
        out[pos] ^= int(rng.integers(1, 256))
        path.write_bytes(bytes(out))
        return path

    records = _records(src)
    assert any(n.split('/')[-2:-1] == ['data'] for n in records)
    for name, (start, size) in records.items():
        if not size:
            continue
        for pos in rng.integers(start, start + size, 4):
            _assert_corrupt(flipped(int(pos)), record=name)
    checked = [range(start, start + size)
               for start, size in records.values()]
    for pos in map(int, rng.integers(0, len(data), 300)):
        try:
            loaded = load_checkpoint_safe(flipped(pos))
        except CorruptCheckpointError as e:
            assert '\n' not in str(e) and str(path) in str(e)
        else:
            assert not any(pos in r for r in checked), pos
            assert _same(loaded, original), pos


def test_torch_load_alone_misses_a_flipped_tensor_byte(trained, tmp_path):
    """The control: without the CRC check the damaged file loads, with a
    different weight."""
    src = osp.join(trained['work_dir'], 'epoch_3.pth')
    data = bytearray(open(src, 'rb').read())
    name = next(n for n in _records(src) if n.endswith('/data/0'))
    start, _ = _records(src)[name]
    data[start + 3] ^= 0x40
    path = tmp_path / 'flipped.pth'
    path.write_bytes(bytes(data))
    with torch.serialization.safe_globals(safe_globals_list()):
        damaged = torch.load(path, weights_only=True)
    assert not _same(damaged, load_checkpoint_safe(src))
    _assert_corrupt(path, record=name)


def test_legacy_format_loads_with_a_warning_that_damage_goes_unseen(
        trained, tmp_path, monkeypatch):
    """What is not detected, said where it happens: a checkpoint in
    PyTorch's legacy (pre-1.6) format has no checksums, so one flipped
    byte of its tensor data loads with a changed weight; every load of
    such a file logs one line saying so. A zip checkpoint with the same
    damage is refused."""
    import logging

    import mmengine.logging

    from dbbd.engine.checkpoint import legacy_format_warning
    logged = []
    monkeypatch.setattr(mmengine.logging, 'print_log',
                        lambda msg, logger=None, level=logging.INFO:
                        logged.append((msg, level)))
    good = load_checkpoint_safe(osp.join(trained['work_dir'], 'epoch_3.pth'))
    assert logged == []  # zip: no warning
    legacy = tmp_path / 'legacy.pth'
    torch.save(good, legacy, _use_new_zipfile_serialization=False)
    data = bytearray(legacy.read_bytes())
    weight = good['state_dict']['linear.weight']
    at = bytes(data).find(weight.numpy().tobytes())
    assert at > 0
    data[at + 1] ^= 0x40
    legacy.write_bytes(bytes(data))
    damaged = load_checkpoint_safe(legacy)
    assert not torch.equal(damaged['state_dict']['linear.weight'], weight)
    assert logged == [(legacy_format_warning(str(legacy)), logging.WARNING)]
    assert '\n' not in logged[0][0] and 'no checksums' in logged[0][0]


def test_missing_checkpoint(tmp_path):
    with pytest.raises(FileNotFoundError, match='does not exist'):
        load_checkpoint_safe(tmp_path / 'nope.pth')


def test_to_plain_loads_without_allow_list(tmp_path):
    from mmengine.config import ConfigDict
    plain = to_plain(
        ConfigDict(
            type='X', dims=(8, 16), w=np.float32(0.5), n=np.int64(3),
            fn=ToyModel, nested=[dict(flag=np.bool_(True))]))
    assert plain == dict(
        type='X', dims=[8, 16], w=0.5, n=3,
        fn=f'{ToyModel.__module__}.ToyModel', nested=[dict(flag=True)])
    torch.save(plain, tmp_path / 'p.pth')
    assert torch.load(tmp_path / 'p.pth', weights_only=True) == plain


# ---------------------------------------------------------------------------
# Resume
# ---------------------------------------------------------------------------


@pytest.mark.parametrize('mode', ['auto', 'load_from'])
def test_resume_restores_epoch_iter_optimizer(trained, tmp_path, mode):
    work_dir = str(tmp_path / 'wd')
    shutil.copytree(trained['work_dir'], work_dir)
    # what a killed writer leaves behind
    stale = osp.join(work_dir, '.epoch_4.pth.dbbd-tmp')
    open(stale, 'wb').write(b'partial')
    source = 'epoch_3.pth' if mode == 'auto' else 'epoch_2.pth'
    expected = load_checkpoint_safe(osp.join(work_dir, source))
    recorder = StateRecorder()
    kw = dict(resume=True)
    if mode == 'load_from':
        kw['load_from'] = osp.join(work_dir, source)
    runner = make_runner(
        work_dir,
        ckpt_hook(max_keep_ckpts=2, save_best='loss', rule='less'),
        max_epochs=4, custom_hooks=[recorder], **kw)
    runner.train()

    assert recorder.epoch == expected['meta']['epoch']
    assert recorder.iter == expected['meta']['iter'] > 0
    state = recorder.optim_state['state']
    assert len(state) == 2  # weight and bias momentum buffers
    for key, saved in expected['optimizer']['state'].items():
        assert torch.equal(state[key]['momentum_buffer'],
                           saved['momentum_buffer'])
    assert recorder.sched_last_step == expected['param_schedulers'][0][
        'last_step'] > 0
    assert runner.epoch == 4
    assert not osp.exists(stale)
    assert read_last(work_dir) == 'epoch_4.pth'


def test_resume_of_a_complete_run_says_so(trained, tmp_path):
    """--resume of a run that trained all its epochs: nothing trained,
    nothing written, one line saying the run is complete and how to train
    longer."""
    from toy_runner import IterCounter, read_log
    work_dir = str(tmp_path / 'wd')
    shutil.copytree(trained['work_dir'], work_dir)
    before = digest(work_dir)
    counter = IterCounter()
    runner = make_runner(
        work_dir, ckpt_hook(max_keep_ckpts=2, save_best='loss', rule='less'),
        max_epochs=3, custom_hooks=[counter], resume=True)
    runner.train()
    assert counter.iters == 0 and runner.epoch == 3

    def saved(d):  # checkpoints and the pointer (a new log folder is made)
        return {k: v for k, v in d.items() if v is not None}
    assert saved(digest(work_dir)) == saved(before)
    lines = [ln for ln in read_log(runner).splitlines()
             if 'This run is complete' in ln]
    assert len(lines) == 1
    assert lines[0].endswith(
        'This run is complete: the resumed checkpoint has trained 3 of '
        'max_epochs=3, so there is nothing to train; to train longer, '
        'resume with a larger max_epochs (--resume --cfg-options '
        'train_cfg.max_epochs=6; the cosine schedule stretches to the new '
        'length)')
    # a run with epochs left says nothing of the kind
    import logging
    said = []
    handler = logging.Handler()
    handler.emit = lambda record: said.append(record.getMessage())
    runner = make_runner(
        work_dir, ckpt_hook(max_keep_ckpts=2, save_best='loss', rule='less'),
        max_epochs=4, resume=True)
    runner.logger.addHandler(handler)
    try:
        runner.train()
    finally:
        runner.logger.removeHandler(handler)
    assert runner.epoch == 4 and said
    assert not [m for m in said if 'This run is complete' in m]


def resume_a_copy(original, copy_dir, max_epochs):
    """Copy the work dir ``original`` to ``copy_dir`` and resume the copy
    to ``max_epochs`` with a new best at every validation (its previous
    best must go). The original must not change. Returns the copy's
    checkpoint files; ``last_checkpoint`` names the last epoch."""
    before = digest(original)
    shutil.copytree(original, copy_dir)
    runner = make_runner(
        copy_dir,
        ckpt_hook(max_keep_ckpts=2, save_best='loss', rule='less'),
        max_epochs=max_epochs, values=[0.1], resume=True)
    runner.train()
    assert runner.epoch == max_epochs
    assert digest(original) == before
    assert read_last(copy_dir) == f'epoch_{max_epochs}.pth'
    return ckpt_files(copy_dir)


def test_copied_work_dir_resume_leaves_original_alone(trained, tmp_path):
    assert resume_a_copy(trained['work_dir'], str(tmp_path / 'copy'),
                         4) == [
        'best_loss_epoch_4.pth', 'epoch_3.pth', 'epoch_4.pth'
    ]


def test_copied_legacy_work_dir_with_absolute_paths(tmp_path):
    """A work dir written by mmengine's own CheckpointHook (absolute paths)
    and then copied: resuming the copy must not touch the original, and
    replaces the copy's old best (recognised as its own)."""
    original = str(tmp_path / 'orig')
    make_runner(
        original,
        dict(type='CheckpointHook', interval=1, max_keep_ckpts=2,
             save_best='loss', rule='less'),
        max_epochs=2).train()
    assert osp.isabs(read_last(original))
    assert resume_a_copy(original, str(tmp_path / 'copy'), 3) == [
        'best_loss_epoch_3.pth', 'epoch_2.pth', 'epoch_3.pth'
    ]


# ---------------------------------------------------------------------------
# Writing: order and atomicity
# ---------------------------------------------------------------------------


def test_deletes_only_after_the_replacement_is_written(trained):
    events = {e['name']: e for e in trained['events']}
    assert set(events) == {
        'epoch_1.pth', 'best_loss_epoch_1.pth', 'best_loss_epoch_2.pth'
    }
    # max_keep_ckpts=2: epoch_1 goes once epoch_3 is complete and named by
    # last_checkpoint
    assert 'epoch_3.pth' in events['epoch_1.pth']['present']
    assert events['epoch_1.pth']['last'] == 'epoch_3.pth'
    # an old best goes once the new best exists and the regular checkpoint
    # on disk records the new one
    for k in (1, 2):
        event = events[f'best_loss_epoch_{k}.pth']
        assert f'best_loss_epoch_{k + 1}.pth' in event['present']
        assert event['newer_best'] == f'best_loss_epoch_{k + 1}.pth'
    assert ckpt_files(trained['work_dir']) == [
        'best_loss_epoch_3.pth', 'epoch_2.pth', 'epoch_3.pth'
    ]
    assert tmp_files(trained['work_dir']) == []


def _assert_epoch_1_survives(work_dir):
    assert ckpt_files(work_dir) == ['epoch_1.pth']
    assert tmp_files(work_dir) == []
    assert read_last(work_dir) == 'epoch_1.pth'
    ckpt = load_checkpoint_safe(osp.join(work_dir, 'epoch_1.pth'))
    assert ckpt['meta']['epoch'] == 1


def test_crash_in_torch_save_keeps_previous_checkpoint(tmp_path,
                                                       monkeypatch):
    real_save = torch.save
    calls = []

    def crashing_save(obj, f, *a, **kw):
        if isinstance(obj, dict) and 'state_dict' in obj:
            calls.append(1)
            if len(calls) == 2:
                f.write(b'PK\x03\x04 half a checkpoint')
                raise RuntimeError('simulated crash inside torch.save')
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(torch, 'save', crashing_save)
    work_dir = str(tmp_path)
    runner = make_runner(work_dir, ckpt_hook(max_keep_ckpts=1), max_epochs=2)
    with pytest.raises(RuntimeError, match='simulated crash'):
        runner.train()
    _assert_epoch_1_survives(work_dir)


@pytest.mark.parametrize('name', ['epoch_2.pth', 'last_checkpoint'])
def test_full_disk_is_one_line_and_keeps_previous_checkpoint(
        tmp_path, monkeypatch, name):
    """ENOSPC half-way through writing epoch_2.pth (or the last_checkpoint
    that names it): one line naming the file, the space it needs and the
    space free; epoch_1.pth and last_checkpoint stay as they were."""
    import errno
    import shutil
    from dbbd.engine.checkpoint import CheckpointWriteError
    real_put = LocalBackend.put
    real_open = open
    written = []

    def full_disk_put(self, obj, filepath):
        if 'epoch_2' in osp.basename(filepath):
            with real_open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            written.append((filepath, len(obj)))
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_put(self, obj, filepath)

    def full_disk_open(file, mode='r', *a, **kw):
        if 'last_checkpoint' in str(file) and 'w' in mode and osp.exists(
                osp.join(tmp_path, 'epoch_2.pth')):
            raise OSError(errno.ENOSPC, 'No space left on device')
        return real_open(file, mode, *a, **kw)

    if name == 'epoch_2.pth':
        monkeypatch.setattr(LocalBackend, 'put', full_disk_put)
    else:
        monkeypatch.setattr('builtins.open', full_disk_open)
    work_dir = str(tmp_path)
    runner = make_runner(work_dir, ckpt_hook(max_keep_ckpts=1), max_epochs=2)
    with pytest.raises(CheckpointWriteError) as info:
        runner.train()
    monkeypatch.undo()
    msg = str(info.value)
    assert '\n' not in msg
    assert msg.startswith(f'no space left on the device for '
                          f'{osp.join(work_dir, name)}: it needs about ')
    free = shutil.disk_usage(work_dir).free / 2**30
    assert f'{free:.1f} GB is free in {work_dir}' in msg or 'MB' in msg
    assert msg.endswith('the previous checkpoints are intact')
    if name == 'epoch_2.pth':
        # the size of the checkpoint it was writing
        need = written[0][1]
        assert f'it needs about {need / 1024:.1f} KB ' in msg
        # the partial bytes went to a temporary name, never to epoch_2.pth
        assert written and all(
            osp.basename(p) != 'epoch_2.pth' for p, _ in written)
        _assert_epoch_1_survives(work_dir)
    else:
        # epoch_2.pth is complete, last_checkpoint still names epoch_1
        assert read_last(work_dir) == 'epoch_1.pth'
        assert tmp_files(work_dir) == []
        for n in ('epoch_1.pth', 'epoch_2.pth'):
            assert load_checkpoint_safe(osp.join(work_dir, n))['state_dict']


def test_full_disk_at_the_first_checkpoint_claims_no_previous_one(
        tmp_path, monkeypatch):
    """ENOSPC while writing epoch_1.pth, the first checkpoint: the line
    says none had been saved, not that previous ones are intact."""
    import errno

    from dbbd.engine.checkpoint import CheckpointWriteError

    def full_disk_put(self, obj, filepath):
        raise OSError(errno.ENOSPC, 'No space left on device')

    monkeypatch.setattr(LocalBackend, 'put', full_disk_put)
    runner = make_runner(str(tmp_path), ckpt_hook(), max_epochs=1)
    with pytest.raises(CheckpointWriteError) as info:
        runner.train()
    msg = str(info.value)
    assert msg.startswith(f'no space left on the device for '
                          f'{osp.join(str(tmp_path), "epoch_1.pth")}: ')
    assert msg.endswith('free some space (or use another --work-dir) and '
                        'run again; no checkpoint had been saved yet')
    assert 'intact' not in msg


PUBLISHED = re.compile(r'-[0-9a-f]{8}\.pth')


def test_published_models_are_written_atomically(tmp_path, monkeypatch):
    """mmengine writes a published model (``published_keys``) straight
    onto its final name. A crash half-way through writing the first one
    leaves no file under a published name and no temporary file; without
    the crash both are published, complete, with the published keys
    only."""
    real_put = LocalBackend.put

    def crash_half_way(self, obj, filepath):
        if PUBLISHED.search(osp.basename(str(filepath))):
            with open(filepath, 'wb') as f:
                f.write(obj[:len(obj) // 2])
            raise RuntimeError('simulated crash while publishing')
        return real_put(self, obj, filepath)

    hook = ckpt_hook(save_best='loss', rule='less',
                     published_keys=['meta', 'state_dict'])
    crashed = str(tmp_path / 'crashed')
    monkeypatch.setattr(LocalBackend, 'put', crash_half_way)
    with pytest.raises(RuntimeError, match='simulated crash'):
        make_runner(crashed, hook, max_epochs=1).train()
    monkeypatch.undo()
    assert ckpt_files(crashed) == ['best_loss_epoch_1.pth', 'epoch_1.pth']
    assert tmp_files(crashed) == []

    work_dir = str(tmp_path / 'work')
    make_runner(work_dir, hook, max_epochs=1).train()
    published = [n for n in ckpt_files(work_dir) if PUBLISHED.search(n)]
    assert sorted(PUBLISHED.sub('.pth', n) for n in published) == [
        'best_loss_epoch_1.pth', 'epoch_1.pth'
    ]
    for name in published:
        ckpt = load_checkpoint_safe(osp.join(work_dir, name))
        assert set(ckpt) == {'meta', 'state_dict'}
    assert tmp_files(work_dir) == []


def test_no_file_client_notices_in_the_log(tmp_path):
    """mmengine's CheckpointHook and save_checkpoint build a FileClient
    they do not use, which logs two deprecation notices; the log of a run
    with SafeCheckpointHook has neither, and keeps its other warnings."""
    from toy_runner import read_log
    runner = make_runner(tmp_path, ckpt_hook(), max_epochs=1)
    runner.logger.warning('a warning of the run')
    runner.train()
    log = read_log(runner)
    assert 'Saving checkpoint at 1 epochs' in log
    assert 'a warning of the run' in log
    assert 'FileClient' not in log and 'HardDiskBackend' not in log


def test_standalone_validation_does_not_touch_checkpoints(tmp_path):
    """runner.val() without training: metrics come back, nothing is saved
    and the hook does not fail for want of a checkpoint folder."""
    runner = make_runner(tmp_path, ckpt_hook(save_best='loss', rule='less'),
                         max_epochs=1)
    metrics = runner.val()
    assert 'loss' in metrics
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.pth')]


# ---------------------------------------------------------------------------
# When checkpoints are written, and what a kill may leave behind
# ---------------------------------------------------------------------------


def test_checkpoints_only_at_the_interval(tmp_path):
    """interval=3 over 7 epochs, a new best at every validation: regular
    checkpoints at 3, 6 and 7 (save_last) only; best checkpoints rotate.
    Each regular checkpoint holds the state after its epoch's validation."""
    from mmengine.hooks import EarlyStoppingHook  # noqa: F401
    written = []
    real_replace = os.replace

    def recording_replace(src, dst, *a, **kw):
        if str(dst).endswith('.pth'):
            written.append(osp.basename(str(dst)))
        return real_replace(src, dst, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, 'replace', recording_replace)
        make_runner(
            tmp_path,
            ckpt_hook(interval=3, max_keep_ckpts=5, save_best='loss',
                      rule='less'),
            max_epochs=7, values=[7, 6, 5, 4, 3, 2, 1],
            custom_hooks=[dict(type='dbbd.ResumableEarlyStoppingHook',
                               monitor='loss', rule='less', min_delta=0.5,
                               patience=3)]).train()
    regular = sorted({n for n in written if n.startswith('epoch_')})
    assert regular == ['epoch_3.pth', 'epoch_6.pth', 'epoch_7.pth']
    assert ckpt_files(tmp_path) == [
        'best_loss_epoch_7.pth', 'epoch_3.pth', 'epoch_6.pth', 'epoch_7.pth'
    ]
    for epoch in (3, 6, 7):
        ckpt = load_checkpoint_safe(osp.join(tmp_path, f'epoch_{epoch}.pth'))
        assert ckpt['meta']['dbbd_val_pending'] is False
        # the state after this epoch's validation (loss 8 - epoch)
        info = ckpt['message_hub']['runtime_info']
        assert info['best_score'] == 8 - epoch
        assert info['best_ckpt'] == f'best_loss_epoch_{epoch}.pth'
        assert ckpt['meta']['early_stopping']['best_score'] == 8 - epoch


@pytest.mark.parametrize(
    'lost, values_after',
    [
        # dies before epoch 2's validation: the resumed run runs it
        ('epoch_1.pth', [2.0, 1.0]),
        # dies after it, while completing epoch_2.pth
        ('best_loss_epoch_1.pth', [1.0]),
    ])
def test_killed_rotation_leaves_nothing_behind(tmp_path, lost,
                                               values_after):
    """The run dies right where it would delete a superseded checkpoint
    (a rotated-out regular one, or the previous best); the resumed run
    deletes it and ends with the files of an uninterrupted run.
    ``values_after``: the validation losses the resumed run still sees."""
    reference = tmp_path / 'reference'
    hook = ckpt_hook(max_keep_ckpts=1, save_best='loss', rule='less')
    make_runner(reference, hook, max_epochs=3).train()

    work = tmp_path / 'work'
    real_remove = os.remove

    def dies_at_the_deletion(path, *a, **kw):
        if osp.basename(os.fspath(path)) == lost:
            raise KeyboardInterrupt('simulated kill')
        return real_remove(path, *a, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(os, 'remove', dies_at_the_deletion)
        with pytest.raises(KeyboardInterrupt):
            make_runner(work, hook, max_epochs=3).train()
    assert lost in ckpt_files(work)
    make_runner(work, hook, max_epochs=3, values=values_after,
                resume=True).train()
    assert ckpt_files(work) == ckpt_files(reference) == [
        'best_loss_epoch_3.pth', 'epoch_3.pth'
    ]
