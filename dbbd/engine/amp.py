"""Mixed precision through mmengine's ``AmpOptimWrapper``.

Switched on by ``tools/train.py --amp`` or ``amp = True`` in a config.
"""
import warnings

import torch

__all__ = ['amp_optim_wrapper', 'amp_dtype']

_DTYPES = ('bfloat16', 'float16')


def amp_dtype():
    """``'bfloat16'`` where the current GPU supports it, else
    ``'float16'``."""
    return 'bfloat16' if torch.cuda.is_bf16_supported() else 'float16'


def _quiet_mmengine_amp_warnings():
    """mmengine 0.10.7 builds ``torch.cuda.amp.GradScaler`` and calls
    ``torch.get_autocast_gpu_dtype``, both deprecated on recent torch; the
    warnings say nothing the user can act on."""
    warnings.filterwarnings(
        'ignore', message=r'.*torch\.cuda\.amp\.GradScaler\(args\.\.\.\).*'
        r'is deprecated')
    warnings.filterwarnings(
        'ignore', message=r'.*get_autocast_gpu_dtype.*is deprecated')


def amp_optim_wrapper(optim_wrapper_cfg, dtype=None):
    """Return ``optim_wrapper_cfg`` switched to ``AmpOptimWrapper``.

    bf16 where the GPU supports it, with loss scaling off (bf16 has fp32's
    exponent range: no gradient underflow to guard against); otherwise fp16
    with dynamic loss scaling (a step whose gradients overflow is skipped
    and the scale lowered). Parameters and optimizer state stay fp32.
    mmengine's AMP asserts a GPU-like device, and CPU autocast supports only
    bf16, so AMP is refused on CPU with a clear ``RuntimeError`` rather than
    failing deep inside mmengine.

    Args:
        optim_wrapper_cfg: the config's ``optim_wrapper`` (its other keys,
            e.g. ``clip_grad`` or ``accumulative_counts``, are kept).
        dtype: ``'bfloat16'`` or ``'float16'`` to force one; None picks as
            above.
    """
    if not torch.cuda.is_available():
        raise RuntimeError(
            '--amp (amp=True) needs a CUDA GPU (mmengine\'s AmpOptimWrapper '
            'cannot run on CPU); train without it here')
    if dtype is None:
        dtype = amp_dtype()
    if dtype not in _DTYPES:
        raise ValueError(f'amp dtype must be one of {_DTYPES}, got {dtype!r}')
    _quiet_mmengine_amp_warnings()
    cfg = dict(optim_wrapper_cfg)
    cfg['type'] = 'AmpOptimWrapper'
    cfg['dtype'] = dtype
    if dtype == 'bfloat16':
        # a disabled GradScaler: scale/unscale/update are no-ops
        cfg['loss_scale'] = dict(enabled=False)
    else:
        cfg['loss_scale'] = 'dynamic'
    return cfg
