"""High-level procedures, importable and testable in one process.

- :mod:`.probe`: the fitted linear probe of frozen point features and the
  floors of a split (majority class, raw features, untrained backbone);
- :mod:`.transfer`: the transfer table of ``tools/transfer.py``;
- :mod:`.train_runs`: watched ``tools/train.py`` subprocesses and the
  results they leave;
- :mod:`.records`: records of finished work keyed by content.

Submodules import torch, mmengine and the models only when used.
"""
from .records import (config_sha256, read_record, relative_inside,
                      resolve_inside, sha256_file, write_record)

__all__ = ['config_sha256', 'read_record', 'relative_inside',
           'resolve_inside', 'sha256_file', 'write_record']
