"""Where mmengine may load a checkpoint from, each through the safe loader.

mmengine's ``CheckpointLoader`` picks a loader by the address's scheme:
local paths, ``http(s)://``, ``torchvision://`` / ``modelzoo://``,
``open-mmlab://`` / ``openmmlab://``, ``mmcls://``, ``pavi://``,
``s3://`` and ``petrel://``. Its own loaders call ``torch.load`` (the HTTP
one through ``torch.hub.load_state_dict_from_url`` with
``weights_only=False``), so a checkpoint given as an address ran the code
pickled in it. :func:`register_source_loaders` replaces every loader
mmengine knows:

- addresses that resolve to a download (``http(s)``, ``torchvision``,
  ``modelzoo``, ``open-mmlab``, ``openmmlab``, ``mmcls``) are downloaded
  into torch's hub cache (``<torch hub dir>/checkpoints``, as mmengine
  does) and the downloaded file is read by
  :func:`~dbbd.engine.checkpoint.load_checkpoint_safe`;
- object stores and model clouds (``pavi``, ``s3``, ``petrel``) are refused
  with one line: copy the file to a local path first;
- any other scheme registered by then is refused the same way.
"""
import os
import os.path as osp
import re
import urllib.error
from typing import Any, Callable, Dict
from urllib.parse import urlparse

import torch
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mm_ckpt
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint import (CheckpointLoadError, load_checkpoint_safe,
                         load_from_local_safe)

__all__ = [
    'CheckpointSourceError', 'load_from_http_safe',
    'load_from_torchvision_safe', 'load_from_openmmlab_safe',
    'load_from_mmcls_safe', 'register_safe_loader', 'register_source_loaders',
    'refused_loader'
]


class CheckpointSourceError(CheckpointLoadError):
    """The checkpoint's address is one DBBD does not load from, or the
    download failed; the message is one line."""


def _one_line(err: BaseException) -> str:
    text = ' '.join(str(err).split())
    return f'{type(err).__name__}: {text}' if text else type(err).__name__


def _download(url: str) -> str:
    """The local copy of ``url`` in torch's hub cache, downloaded when
    absent (the cache mmengine's HTTP loader uses)."""
    model_dir = osp.join(torch.hub.get_dir(), 'checkpoints')
    name = osp.basename(urlparse(url).path)
    if not name:
        raise CheckpointSourceError(
            f'checkpoint {url}: the address names no file')
    cached = osp.join(model_dir, name)
    if osp.isfile(cached):
        return cached
    os.makedirs(model_dir, exist_ok=True)
    print_log(f'Downloading {url} to {cached}', logger='current')
    try:
        # writes a temporary file and renames it: never a partial `cached`
        torch.hub.download_url_to_file(url, cached, None, progress=False)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise CheckpointSourceError(
            f'checkpoint {url} could not be downloaded ({_one_line(e)}); '
            'check the address, or download it yourself and give its local '
            'path') from None
    return cached


def load_from_http_safe(filename: str, map_location: Any = None) -> Any:
    """Download ``filename`` (rank 0 first, then the others, as mmengine
    does) and load the copy with the allow-list."""
    rank, world_size = get_dist_info()
    path = _download(filename) if rank == 0 else None
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            path = _download(filename)
    return load_checkpoint_safe(
        path, map_location, name=f'{filename} (downloaded to {path})')


def _model_url(table: Callable[[], Dict[str, str]], scheme: str,
               name: str) -> str:
    """``table()[name]``, with a one-line error for what can go wrong."""
    try:
        urls = table()
    except ImportError as e:
        raise CheckpointSourceError(
            f'checkpoint {scheme}{name}: {_one_line(e)}; install the package '
            'or give a local path') from None
    if name not in urls:
        raise CheckpointSourceError(
            f'checkpoint {scheme}{name}: no model called {name!r} is known '
            f'under {scheme}')
    return urls[name]


def load_from_torchvision_safe(filename: str, map_location: Any = None):
    """``torchvision://NAME`` and the deprecated ``modelzoo://NAME``."""
    scheme = 'modelzoo://' if filename.startswith(
        'modelzoo://') else 'torchvision://'
    url = _model_url(mm_ckpt.get_torchvision_models, scheme,
                     filename[len(scheme):])
    return load_from_http_safe(url, map_location)


def load_from_openmmlab_safe(filename: str, map_location: Any = None):
    """``open-mmlab://NAME`` / ``openmmlab://NAME``: an address from
    mmengine's model table (``<mmengine home>/open_mmlab.json`` may add
    entries), or a file under the mmengine home."""
    scheme = 'open-mmlab://' if filename.startswith(
        'open-mmlab://') else 'openmmlab://'
    name = filename[len(scheme):]
    name = mm_ckpt.get_deprecated_model_names().get(name, name)
    url = _model_url(mm_ckpt.get_external_models, scheme, name)
    if url.startswith(('http://', 'https://')):
        return load_from_http_safe(url, map_location)
    return load_checkpoint_safe(
        osp.join(mm_ckpt._get_mmengine_home(), url), map_location,
        name=f'{filename} ({url})')


def load_from_mmcls_safe(filename: str, map_location: Any = None):
    """``mmcls://NAME``: the backbone weights of an mmcls model."""
    url = _model_url(mm_ckpt.get_mmcls_models, 'mmcls://',
                     filename[len('mmcls://'):])
    return mm_ckpt._process_mmcls_checkpoint(
        load_from_http_safe(url, map_location))


def refused_loader(scheme: str) -> Callable:
    """A loader that refuses every address of ``scheme`` with one line."""

    def load_from_refused(filename: str, map_location: Any = None):
        raise CheckpointSourceError(
            f'checkpoint {filename}: DBBD does not load checkpoints from '
            f'{scheme} addresses (it could not check what they run when '
            'unpickled); copy the file to a local path and give that path')

    return load_from_refused


#: The loader for each scheme mmengine 0.10.7 registers (its prefixes are
#: regular expressions, matched longest first).
_SAFE_LOADERS: Dict[str, Callable] = {
    '': load_from_local_safe,
    'http://': load_from_http_safe,
    'https://': load_from_http_safe,
    'torchvision://': load_from_torchvision_safe,
    'modelzoo://': load_from_torchvision_safe,
    'open-mmlab://': load_from_openmmlab_safe,
    'openmmlab://': load_from_openmmlab_safe,
    'mmcls://': load_from_mmcls_safe,
}


def _scheme_name(prefix: str) -> str:
    """'s3://' for r'(\\S+\\:)?s3://'."""
    return re.sub(r'^\(.*?\)\?', '', prefix).replace('\\', '') or prefix


def register_source_loaders() -> None:
    """Make every scheme of ``CheckpointLoader`` load safely or refuse.

    Idempotent. Schemes registered later (by a package imported after
    DBBD) are not covered: call this again after importing such a package.
    """
    for prefix in list(CheckpointLoader._schemes) + list(_SAFE_LOADERS):
        loader = _SAFE_LOADERS.get(prefix)
        if loader is None:
            loader = refused_loader(_scheme_name(prefix))
        CheckpointLoader.register_scheme(prefixes=prefix, loader=loader,
                                         force=True)


def register_safe_loader() -> None:
    """Make every checkpoint address mmengine understands load safely.

    Idempotent; called when :mod:`dbbd.engine` is imported (importing any
    of its modules, :mod:`dbbd.engine.checkpoint` included, imports it
    first). Local paths (mmengine's fallback scheme ``''``) go to
    :func:`~dbbd.engine.checkpoint.load_from_local_safe`; URLs and
    model-zoo names are downloaded and then loaded the same way, object
    stores are refused (:func:`register_source_loaders`).
    """
    register_source_loaders()
