"""Mixed precision through mmengine's ``AmpOptimWrapper``."""
import torch

__all__ = ['amp_optim_wrapper']


def amp_optim_wrapper(optim_wrapper_cfg):
    """Return ``optim_wrapper_cfg`` switched to ``AmpOptimWrapper``.

    bf16 where the GPU supports it (no loss scaling needed), otherwise fp16
    with dynamic loss scaling. mmengine's AMP asserts a GPU-like device, and
    CPU autocast supports only bf16, so AMP is refused on CPU with a clear
    ``RuntimeError`` rather than failing deep inside mmengine.
    """
    if not torch.cuda.is_available():
        raise RuntimeError(
            '--amp needs a CUDA GPU (mmengine\'s AmpOptimWrapper cannot run '
            'on CPU); train without --amp here')
    cfg = dict(optim_wrapper_cfg)
    cfg['type'] = 'AmpOptimWrapper'
    if torch.cuda.is_bf16_supported():
        cfg['dtype'] = 'bfloat16'
    else:
        cfg['dtype'] = 'float16'
        cfg['loss_scale'] = 'dynamic'
    return cfg
