"""Distributed set-up that also works on CPU (gloo).

mmengine 0.10.7's ``pytorch`` launcher calls ``torch.cuda.set_device``
unconditionally and wraps the model in DDP with ``device_ids=[LOCAL_RANK]``,
both wrong without a GPU. On CPU the process group is started here, before
the Runner is built (the Runner then skips its own initialisation), and the
DDP wrapper is told there are no device ids. With a GPU, mmengine's own path
(NCCL) is used unchanged.
"""
import os

import torch
import torch.distributed as dist

__all__ = ['setup_distributed']


def _slurm_env():
    """Fill torch.distributed's env:// variables from Slurm's."""
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    if 'MASTER_ADDR' not in os.environ:
        import subprocess
        addr = subprocess.getoutput(
            f'scontrol show hostname {node_list} | head -n1')
        os.environ['MASTER_ADDR'] = addr
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['RANK'] = str(proc_id)
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')


def setup_distributed(cfg):
    """Prepare ``cfg`` (and the process group on CPU) for ``cfg.launcher``.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher == 'none' or torch.cuda.is_available():
        if not torch.cuda.is_available():
            cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
        return
    if launcher == 'slurm':
        _slurm_env()
    elif launcher != 'pytorch':
        raise ValueError(f'unknown launcher {launcher!r}; use none, '
                         'pytorch or slurm')
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', init_method='env://')
    cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    wrapper = dict(cfg.get('model_wrapper_cfg') or
                   dict(type='MMDistributedDataParallel'))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
