"""Records of finished work that a repeated command may reuse, keyed by the
content they depend on.

A record is a small JSON file in the folder of the work it describes:

- ``key``: what the work depends on, by content (the SHA-256 of the
  resolved config with its options, of the pre-training checkpoint, the
  probe's settings), never by path: the same command after the config,
  an option or the checkpoint changed finds another key and recomputes;
- ``files``: the outputs it points to, as paths relative to its folder
  (a copied work dir points to its own files), each with its SHA-256: an
  output that changed since (edited, overwritten by another run) makes
  the record stale;
- ``digest``: the SHA-256 of everything above and of the other fields: a
  record edited by hand is stale too.

Results are never taken from a record: callers re-read them from the
outputs it points to (a run's ``vis_data/scalars.json``, a probe's
confusion matrices), whose hashes the record checks.
"""
import hashlib
import json
import os
import os.path as osp
from typing import Dict, Optional, Tuple

__all__ = ['sha256_file', 'config_sha256', 'relative_inside',
           'resolve_inside', 'write_record', 'read_record']

FORMAT = 2


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            h.update(block)
    return h.hexdigest()


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(',', ':'),
                      default=str)


def config_sha256(cfg) -> str:
    """Hex SHA-256 of a resolved config (its ``_base_`` files, the file
    itself and the options merged into it), as canonical JSON: a change
    of any value changes it; comments and layout do not."""
    from dbbd.engine.hooks.checkpoint_hook import to_plain
    data = cfg.to_dict() if hasattr(cfg, 'to_dict') else cfg
    return hashlib.sha256(_canonical(to_plain(data)).encode()).hexdigest()


def _within(path: str, folder: str) -> bool:
    path, folder = osp.realpath(path), osp.realpath(folder)
    try:
        return osp.commonpath([path, folder]) == folder
    except ValueError:
        return False


def relative_inside(path: str, folder: str) -> str:
    """``path`` relative to ``folder`` (POSIX separators).

    Raises:
        ValueError: ``path`` is not inside ``folder``.
    """
    if not _within(path, folder):
        raise ValueError(f'{path} is not inside {folder}')
    rel = osp.relpath(osp.realpath(path), osp.realpath(folder))
    return rel.replace(os.sep, '/')


def resolve_inside(rel, folder: str) -> Optional[str]:
    """The file ``rel`` names inside ``folder``; None when ``rel`` is not
    a relative path, leaves the folder (``..``, a link) or names no
    file."""
    if not isinstance(rel, str) or not rel or osp.isabs(rel) or \
            rel.startswith(('/', '\\')) or '://' in rel:
        return None
    path = osp.normpath(osp.join(folder, rel))
    if not _within(path, folder) or not osp.isfile(path):
        return None
    return path


def _digest(kind: str, key: dict, files: dict, fields: dict) -> str:
    payload = dict(format=FORMAT, kind=kind, key=key, files=files,
                   fields=fields)
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


def write_record(path: str, kind: str, key: dict,
                 files: Dict[str, str], **fields) -> dict:
    """Write the record ``path``: ``files`` maps a name to a file inside
    the record's folder (stored relative, with its SHA-256); ``fields``
    are plain JSON values (times, counts, names)."""
    from dbbd.engine.checkpoint import atomic_write_text
    folder = osp.dirname(osp.abspath(path))
    stored = {}
    for name, file in files.items():
        stored[name] = dict(path=relative_inside(file, folder),
                            sha256=sha256_file(file))
    record = dict(format=FORMAT, kind=kind, key=key, files=stored,
                  fields=fields,
                  digest=_digest(kind, key, stored, fields))
    atomic_write_text(path, json.dumps(record, indent=1, sort_keys=True))
    return record


def read_record(path: str, kind: str, key: dict
                ) -> Tuple[Optional[dict], str]:
    """The record ``path`` when it still describes ``key``.

    Returns:
        ``(record, '')`` with ``record['paths']`` (name -> absolute path
        of each output, checked), or ``(None, why)`` with a short reason:
        no record, another format or kind, another key (the config, an
        option or the checkpoint changed), a digest that does not match
        (edited by hand), an output missing, outside the folder or changed
        since.
    """
    if not osp.isfile(path):
        return None, 'no record'
    try:
        with open(path, encoding='utf-8') as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        return None, f'unreadable record ({type(e).__name__})'
    if not isinstance(record, dict) or record.get('format') != FORMAT or \
            record.get('kind') != kind:
        return None, 'a record of another format'
    files, fields = record.get('files'), record.get('fields')
    if not isinstance(files, dict) or not isinstance(fields, dict):
        return None, 'a malformed record'
    if record.get('digest') != _digest(kind, record.get('key'), files,
                                       fields):
        return None, 'the record was edited (its digest does not match)'
    if record.get('key') != json.loads(_canonical(key)):
        return None, 'made for another config, option or checkpoint'
    folder = osp.dirname(osp.abspath(path))
    paths = {}
    for name, entry in files.items():
        if not isinstance(entry, dict):
            return None, 'a malformed record'
        where = resolve_inside(entry.get('path'), folder)
        if where is None:
            return None, (f'its {name} ({entry.get("path")}) is not a file '
                          'inside its folder')
        if sha256_file(where) != entry.get('sha256'):
            return None, f'its {name} changed since it was recorded'
        paths[name] = where
    record['paths'] = paths
    return record, ''
