"""Checkpoints given as addresses: every scheme mmengine's
``CheckpointLoader`` knows loads with the allow-list or is refused, and a
crafted checkpoint served over HTTP (a real local server) never runs."""
import functools
import http.server
import json
import os.path as osp
import threading

import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner.checkpoint import (CheckpointLoader, _load_checkpoint,
                                        load_from_http)

import dbbd.engine  # noqa: F401  registers the loaders
from dbbd.engine import checkpoint as ckpt_mod
from dbbd.engine import checkpoint_sources as sources
from dbbd.engine.checkpoint import (CheckpointLoadError,
                                    UnsafeCheckpointError,
                                    find_latest_checkpoint)
from dbbd.engine.checkpoint_sources import CheckpointSourceError


class _CreatesFile:
    """Unpickling this calls ``open(path, 'w')``: the file appearing is the
    proof that code from the checkpoint ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, 'w'))


@pytest.fixture
def served(tmp_path, monkeypatch):
    """A local HTTP server over ``tmp_path/www`` holding ``evil.pth`` (its
    unpickling creates ``tmp_path/MARKER``) and ``good.pth``; torch's hub
    cache and the mmengine home are under ``tmp_path``."""
    www = tmp_path / 'www'
    www.mkdir()
    marker = tmp_path / 'MARKER'
    torch.save({'state_dict': {'w': torch.ones(2)},
                'meta': _CreatesFile(marker)}, www / 'evil.pth')
    buf = HistoryBuffer()
    buf.update(1.5)
    torch.save({'state_dict': {'w': torch.arange(3.)},
                'message_hub': {'loss': buf}}, www / 'good.pth')
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setenv('MMENGINE_HOME', str(tmp_path / 'mmengine_home'))

    class Quiet(http.server.SimpleHTTPRequestHandler):

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(Quiet, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05, ),
                              daemon=True)
    thread.start()
    try:
        yield dict(url=f'http://127.0.0.1:{server.server_address[1]}',
                   marker=marker, tmp=tmp_path)
    finally:
        server.shutdown()
        server.server_close()


def _one_line(err):
    msg = str(err)
    assert '\n' not in msg and msg.strip() == msg
    return msg


def test_every_known_scheme_is_dbbds():
    """No scheme is left with an mmengine loader (which would unpickle with
    weights_only=False or without the allow-list)."""
    for prefix, loader in CheckpointLoader._schemes.items():
        assert loader.__module__ in (ckpt_mod.__name__,
                                     sources.__name__), prefix
    expected = {
        'work_dirs/x/epoch_1.pth': ckpt_mod.load_from_local_safe,
        'http://host/x.pth': sources.load_from_http_safe,
        'https://host/x.pth': sources.load_from_http_safe,
        'torchvision://resnet50': sources.load_from_torchvision_safe,
        'modelzoo://resnet50': sources.load_from_torchvision_safe,
        'open-mmlab://resnet50_caffe': sources.load_from_openmmlab_safe,
        'openmmlab://resnet50_caffe': sources.load_from_openmmlab_safe,
        'mmcls://resnet50': sources.load_from_mmcls_safe,
    }
    for address, loader in expected.items():
        assert CheckpointLoader._get_checkpoint_loader(address) is loader


@pytest.mark.parametrize('address', [
    's3://bucket/epoch_1.pth', 'petrel://bucket/epoch_1.pth',
    'open-mmlab:s3://bucket/epoch_1.pth', 'pavi://model/epoch_1.pth'
])
def test_object_stores_are_refused_in_one_line(address):
    with pytest.raises(CheckpointSourceError) as info:
        _load_checkpoint(address, map_location='cpu')
    msg = _one_line(info.value)
    assert address in msg and 'local path' in msg


def test_crafted_checkpoint_over_http_never_runs(served):
    url = f"{served['url']}/evil.pth"
    with pytest.raises(UnsafeCheckpointError) as info:
        _load_checkpoint(url, map_location='cpu')
    msg = _one_line(info.value)
    assert url in msg and '`io.open`' in msg
    assert not served['marker'].exists()
    # open-mmlab:// names resolve to the same download
    home = served['tmp'] / 'mmengine_home'
    home.mkdir(exist_ok=True)
    (home / 'open_mmlab.json').write_text(json.dumps({'evil': url}))
    with pytest.raises(UnsafeCheckpointError):
        _load_checkpoint('open-mmlab://evil', map_location='cpu')
    assert not served['marker'].exists()


def test_mmengines_http_loader_would_run_it(served):
    """The control: mmengine's own HTTP loader creates the marker."""
    load_from_http(f"{served['url']}/evil.pth", map_location='cpu')
    assert served['marker'].exists()


def test_checkpoint_over_http_loads(served):
    ckpt = _load_checkpoint(f"{served['url']}/good.pth", map_location='cpu')
    assert torch.equal(ckpt['state_dict']['w'], torch.arange(3.))
    assert ckpt['message_hub']['loss'].current() == 1.5


def test_failed_download_is_one_line(served):
    url = f"{served['url']}/missing.pth"
    with pytest.raises(CheckpointSourceError) as info:
        _load_checkpoint(url, map_location='cpu')
    assert url in _one_line(info.value)
    with pytest.raises(CheckpointSourceError) as info:
        _load_checkpoint('torchvision://no_such_model', map_location='cpu')
    assert 'torchvision://no_such_model' in _one_line(info.value)


def test_runner_load_from_url_is_safe(served, make_toy_runner):
    runner = make_toy_runner(served['tmp'] / 'work',
                             load_from=f"{served['url']}/evil.pth")
    with pytest.raises(UnsafeCheckpointError):
        runner.train()
    assert not served['marker'].exists()


@pytest.mark.parametrize('line', [
    'http://127.0.0.1:1/evil.pth', '/etc/passwd', '../outside.pth', '',
    'epoch_9.pth'
])
def test_last_checkpoint_must_name_a_file_in_the_work_dir(
        tmp_path, make_toy_runner, line):
    work = tmp_path / 'work'
    work.mkdir()
    (tmp_path / 'outside.pth').write_bytes(b'x')
    (work / 'last_checkpoint').write_text(line)
    with pytest.raises(CheckpointLoadError) as info:
        find_latest_checkpoint(str(work))
    msg = _one_line(info.value)
    assert osp.join(str(work), 'last_checkpoint') in msg
    assert '--resume PATH' in msg
    assert find_latest_checkpoint(str(work), strict=False) is None
    # the same through a resumed Runner, before anything is loaded
    runner = make_toy_runner(work, resume=True)
    with pytest.raises(CheckpointLoadError) as info:
        runner.train()
    assert _one_line(info.value) == msg
