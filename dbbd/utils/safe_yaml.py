"""YAML configs hold data, never code.

mmengine reads ``.yaml`` / ``.yml`` files (``Config.fromfile``,
``mmengine.load``) with PyYAML's full ``Loader``, which builds any Python
object a tag names: ``!!python/object/apply:os.system ['...']`` in a config
runs a command while the config is read. :func:`register_safe_yaml`
replaces mmengine's YAML handler with one that reads through PyYAML's
``SafeLoader`` and refuses every ``!!python/...`` tag with
:class:`UnsafeYamlError` (one line naming the line and the tag). The one
exception is ``!!python/tuple``, which mmengine's own ``Config.dump`` writes
for tuples and which builds nothing but a tuple.

Importing :mod:`dbbd` registers it, so every config DBBD's tools load goes
through it. Writing is unchanged.
"""
import yaml
from mmengine.fileio.handlers import YamlHandler
from mmengine.fileio.handlers.registry_utils import _register_handler

try:  # the C loader when PyYAML was built with libyaml
    from yaml import CSafeLoader as _SafeBase
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _SafeBase

__all__ = ['UnsafeYamlError', 'SafeConfigLoader', 'SafeYamlHandler',
           'register_safe_yaml']

PYTHON_TAG = 'tag:yaml.org,2002:python/'


class UnsafeYamlError(yaml.YAMLError):
    """A YAML file asks for a Python object; the message is one line."""


class SafeConfigLoader(_SafeBase):
    """``SafeLoader`` plus ``!!python/tuple``; other Python tags raise
    :class:`UnsafeYamlError`."""


def _construct_tuple(loader, node):
    return tuple(loader.construct_sequence(node, deep=True))


def _refuse_python_tag(loader, suffix, node):
    # mmengine hands the loader a copy of the text, so the file's name is
    # not known here; tools/train.py names it
    tag = '!!python/' + suffix
    raise UnsafeYamlError(
        f'line {node.start_mark.line + 1}: the tag {tag} asks for a Python '
        'object, which YAML configs may not create (they could run code); '
        'a YAML config holds plain values only, write code in a Python '
        'config')


SafeConfigLoader.add_constructor(PYTHON_TAG + 'tuple', _construct_tuple)
SafeConfigLoader.add_multi_constructor(PYTHON_TAG, _refuse_python_tag)


class SafeYamlHandler(YamlHandler):
    """mmengine's ``YamlHandler`` reading with :class:`SafeConfigLoader`."""

    def load_from_fileobj(self, file, **kwargs):
        kwargs.setdefault('Loader', SafeConfigLoader)
        return yaml.load(file, **kwargs)


def register_safe_yaml() -> None:
    """Make mmengine read ``.yaml`` / ``.yml`` with :class:`SafeYamlHandler`
    (idempotent)."""
    _register_handler(SafeYamlHandler(), ['yaml', 'yml'])
