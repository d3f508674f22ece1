"""Strict checks of a checkpoint against the model it is loaded into.

mmengine's ``Runner.load_checkpoint`` (used by ``load_from`` and by
``resume``) loads with ``strict=False``: keys the model lacks, keys the
checkpoint lacks and tensors of the wrong shape only produce a warning, and
training goes on from a partly random model. The functions here turn every
such mismatch into :class:`CheckpointMismatchError`, which lists them all,
and refuse checkpoints written in a newer DBBD format
(:class:`CheckpointVersionError`).

:class:`dbbd.engine.hooks.StrictLoadHook` calls :func:`check_checkpoint`
from ``after_load_checkpoint``, which mmengine runs after reading the file
and *before* copying any tensor into the model, so a refused checkpoint
leaves the model untouched. Code that loads weights without a Runner can
call :func:`check_checkpoint` itself.
"""
import re
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

from torch import nn

from .checkpoint import CHECKPOINT_FORMAT_VERSION, CheckpointLoadError

__all__ = [
    'CheckpointMismatchError', 'CheckpointVersionError',
    'check_checkpoint', 'check_checkpoint_version',
    'check_state_dict_matches', 'load_state_dict_checked',
    'model_cfg_differences', 'revise_state_dict'
]

#: What ``Runner.load_checkpoint`` applies to checkpoint keys by default
#: (weights saved from a DDP-wrapped model start with ``module.``).
DEFAULT_REVISE_KEYS: Sequence[Tuple[str, str]] = ((r'^module\.', ''), )

#: Entries shown per kind of mismatch; the exception's attributes keep all.
MAX_LISTED = 20


class CheckpointVersionError(CheckpointLoadError):
    """The checkpoint was written in a newer DBBD format than this code
    reads; the message is one line."""


class CheckpointMismatchError(CheckpointLoadError):
    """The checkpoint's weights do not fit the model.

    ``str(err)`` is a one-line summary (:attr:`summary`) followed by one
    line per mismatch, so it can be printed as is. The full lists are in
    :attr:`missing` (keys the model has and the checkpoint lacks),
    :attr:`unexpected` (keys the checkpoint has and the model lacks) and
    :attr:`shape_mismatches` (``(key, checkpoint shape, model shape)``).
    """

    def __init__(self, source: str, missing: List[str],
                 unexpected: List[str],
                 shape_mismatches: List[Tuple[str, tuple, tuple]],
                 hints: Sequence[str] = ()):
        self.source = source
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.shape_mismatches = list(shape_mismatches)
        parts = []
        if self.missing:
            parts.append(f'{len(self.missing)} missing')
        if self.unexpected:
            parts.append(f'{len(self.unexpected)} unexpected')
        if self.shape_mismatches:
            parts.append(f'{len(self.shape_mismatches)} with another shape')
        self.summary = (
            f'weights in {source} do not match the model ('
            f'{", ".join(parts)}); nothing was loaded')
        lines = [self.summary]
        lines += _listed('missing in the checkpoint', self.missing)
        lines += _listed('unexpected in the checkpoint', self.unexpected)
        lines += _listed('shape mismatch', [
            f'{k}: checkpoint {_shape(a)}, model {_shape(b)}'
            for k, a, b in self.shape_mismatches
        ])
        lines += [f'  hint: {h}' for h in hints]
        super().__init__('\n'.join(lines))


def _shape(shape: tuple) -> str:
    return str(tuple(int(d) for d in shape))  # (1,) for 1-d, as Python


def _listed(title: str, items: List[str]) -> List[str]:
    lines = [f'  {title}: {item}' for item in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        lines.append(f'  {title}: ... and {len(items) - MAX_LISTED} more')
    return lines


def _state_dict_of(checkpoint: Any) -> Dict[str, Any]:
    """The weights of a loaded checkpoint: ``checkpoint['state_dict']``, or
    the dict itself for a bare state dict (as mmengine reads them)."""
    if isinstance(checkpoint, dict) and 'state_dict' in checkpoint:
        return checkpoint['state_dict']
    return checkpoint


def check_checkpoint_version(checkpoint: Any, source: str) -> None:
    """Refuse a checkpoint written in a newer DBBD format.

    Checkpoints without ``meta['dbbd_format_version']`` (mmengine's own
    ``CheckpointHook``, other projects) are accepted: the weight check is
    what protects them.

    Raises:
        CheckpointVersionError: the version is newer than
            :data:`~dbbd.engine.checkpoint.CHECKPOINT_FORMAT_VERSION`.
    """
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    version = meta.get('dbbd_format_version') if isinstance(meta,
                                                            dict) else None
    if version is None:
        return
    if (not isinstance(version, int) or isinstance(version, bool)
            or version > CHECKPOINT_FORMAT_VERSION):
        written_by = meta.get('dbbd_version')
        by = f' by DBBD {written_by}' if written_by else ''
        raise CheckpointVersionError(
            f'{source} was written{by} in checkpoint format {version!r}, but '
            f'this DBBD reads format {CHECKPOINT_FORMAT_VERSION} and older; '
            'update DBBD to load it')


def _revise(keys: Iterable[str],
            revise_keys: Sequence[Tuple[str, str]]) -> Dict[str, str]:
    """{revised key: original key}, as mmengine renames keys before
    loading."""
    out = {}
    for key in keys:
        new = key
        for pattern, repl in revise_keys:
            new = re.sub(pattern, repl, new)
        out[new] = key
    return out


def revise_state_dict(
        state_dict: Dict[str, Any],
        revise_keys: Sequence[Tuple[str, str]] = DEFAULT_REVISE_KEYS
) -> Dict[str, Any]:
    """``state_dict`` with its keys renamed as ``Runner.load_checkpoint``
    renames them (by default: ``module.`` of a DDP-wrapped model dropped).
    The one place the project strips that prefix."""
    return {new: state_dict[old]
            for new, old in _revise(state_dict.keys(), revise_keys).items()}


def check_state_dict_matches(
        model: nn.Module,
        state_dict: Dict[str, Any],
        source: str,
        revise_keys: Sequence[Tuple[str, str]] = DEFAULT_REVISE_KEYS,
        allow_missing: Sequence[str] = (),
        allow_unexpected: Sequence[str] = (),
        hints: Sequence[str] = ()) -> None:
    """Raise unless ``state_dict`` fits ``model`` key for key and shape for
    shape.

    Args:
        model: the (unwrapped) model the weights are meant for.
        state_dict: the checkpoint's weights.
        source: how to name the checkpoint in the message (its path).
        revise_keys: ``(pattern, replacement)`` renames applied to the
            checkpoint's keys first, as ``Runner.load_checkpoint`` does.
        allow_missing / allow_unexpected: regular expressions
            (``re.search``) of keys that may be missing from the checkpoint
            / present only in it, for deliberate partial loads. Nothing is
            allowed by default, except the keys the model names in its
            ``optional_state_keys`` attribute (either way).
        hints: extra lines for the error (see :func:`model_cfg_differences`).

    Raises:
        CheckpointMismatchError: listing every missing key, unexpected key
            and shape mismatch (name, checkpoint shape, model shape).
    """
    expected = model.state_dict()
    given = _revise(state_dict.keys(), revise_keys)
    # keys the model itself declares optional (a PointSegmentor's
    # class_weight: a training quantity, loaded when there)
    optional = tuple(f'^{re.escape(k)}$' for k in getattr(
        model, 'optional_state_keys', ()))
    allow_missing = tuple(allow_missing) + optional
    allow_unexpected = tuple(allow_unexpected) + optional

    def allowed(key, patterns):
        return any(re.search(p, key) for p in patterns)

    missing = [
        k for k in expected if k not in given and not allowed(k, allow_missing)
    ]
    unexpected = [
        given[k] for k in given
        if k not in expected and not allowed(k, allow_unexpected)
    ]
    shapes = []
    for key, original in given.items():
        if key not in expected:
            continue
        ours, theirs = expected[key], state_dict[original]
        # _extra_state entries and other non-tensors have no shape to match
        if not (hasattr(ours, 'shape') and hasattr(theirs, 'shape')):
            continue
        if tuple(ours.shape) != tuple(theirs.shape):
            shapes.append((key, tuple(theirs.shape), tuple(ours.shape)))
    if missing or unexpected or shapes:
        raise CheckpointMismatchError(source, missing, unexpected, shapes,
                                      hints)


def load_state_dict_checked(model: nn.Module,
                            state_dict: Dict[str, Any],
                            source: str,
                            allow_missing: Sequence[str] = (),
                            allow_unexpected: Sequence[str] = (),
                            hints: Sequence[str] = ()) -> None:
    """Check ``state_dict`` against ``model``
    (:func:`check_state_dict_matches`), then load it; nothing is loaded
    when the check fails. Keys matching ``allow_missing`` keep the model's
    values; ``allow_unexpected`` keys are ignored."""
    check_state_dict_matches(model, state_dict, source,
                             allow_missing=allow_missing,
                             allow_unexpected=allow_unexpected, hints=hints)
    expected = model.state_dict()
    model.load_state_dict({k: v for k, v in revise_state_dict(
        state_dict).items() if k in expected}, strict=False)


def _flatten(obj: Any, prefix: str = '') -> Dict[str, Any]:
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out.update(_flatten(v, f'{prefix}.{k}' if prefix else str(k)))
        return out
    if isinstance(obj, (list, tuple)):
        out = {}
        for i, v in enumerate(obj):
            out.update(_flatten(v, f'{prefix}[{i}]'))
        return out or {prefix: []}
    return {prefix: obj}


def model_cfg_differences(saved: Any, current: Any,
                          limit: int = 5) -> List[str]:
    """Differences between the model config stored in a checkpoint and the
    current one, as ``'key: checkpoint X, config Y'`` strings (at most
    ``limit``, then a count). Both are compared as plain values
    (:func:`~dbbd.engine.hooks.checkpoint_hook.to_plain`)."""
    from .hooks.checkpoint_hook import to_plain
    a, b = _flatten(to_plain(saved)), _flatten(to_plain(current))

    def show(flat, key):
        return repr(flat[key]) if key in flat else '(absent)'

    diffs = [
        f'{k}: checkpoint {show(a, k)}, config {show(b, k)}'
        for k in sorted(set(a) | set(b))
        if (k in a) != (k in b) or a.get(k) != b.get(k)
    ]
    if len(diffs) > limit:
        diffs = diffs[:limit] + [f'... and {len(diffs) - limit} more']
    return diffs


def check_checkpoint(model: nn.Module,
                     checkpoint: Any,
                     source: str,
                     model_cfg: Optional[Any] = None,
                     revise_keys: Sequence[Tuple[str, str]] = (
                         DEFAULT_REVISE_KEYS),
                     allow_missing: Sequence[str] = (),
                     allow_unexpected: Sequence[str] = ()) -> None:
    """Format version, then weights, of a loaded checkpoint.

    Args:
        model: the unwrapped model.
        checkpoint: what the checkpoint file holds (a dict with
            ``state_dict`` and ``meta``, or a bare state dict).
        source: the checkpoint's path, for the messages.
        model_cfg: the current ``cfg.model``. When the weights do not match
            and the checkpoint records a ``model_cfg``, the differing config
            keys are added to the error as hints.
        revise_keys, allow_missing, allow_unexpected: see
            :func:`check_state_dict_matches`.

    Raises:
        CheckpointVersionError, CheckpointMismatchError
    """
    check_checkpoint_version(checkpoint, source)
    state_dict = _state_dict_of(checkpoint)
    if not isinstance(state_dict, dict):
        raise CheckpointMismatchError(
            source, [], [f'<{type(state_dict).__name__} instead of a state '
                         'dict>'], [])
    try:
        check_state_dict_matches(model, state_dict, source, revise_keys,
                                 allow_missing, allow_unexpected)
    except CheckpointMismatchError as err:
        meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
        saved_cfg = meta.get('model_cfg') if isinstance(meta, dict) else None
        if saved_cfg is None or model_cfg is None:
            raise
        diffs = model_cfg_differences(saved_cfg, model_cfg)
        hints = ['the model config differs from the one the checkpoint '
                 'was trained with: ' + '; '.join(diffs)] if diffs else []
        raise CheckpointMismatchError(source, err.missing, err.unexpected,
                                      err.shape_mismatches, hints) from None
