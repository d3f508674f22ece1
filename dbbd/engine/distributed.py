"""Distributed training: set-up that also works on CPU (gloo), the DDP
wrapper that logs losses averaged over ranks, and the choice of
``find_unused_parameters``.

mmengine 0.10.7's ``pytorch`` launcher calls ``torch.cuda.set_device``
unconditionally and wraps the model in DDP with ``device_ids=[LOCAL_RANK]``,
both wrong without a GPU. On CPU the process group is started here, before
the Runner is built (the Runner then skips its own initialisation), and the
DDP wrapper is told there are no device ids. With a GPU, mmengine's own
initialisation (NCCL) is used unchanged.

On every device the model is wrapped in :class:`DBBDDistributedDataParallel`
(unless the config names another wrapper type), with
``find_unused_parameters`` chosen by :func:`needs_find_unused_parameters`.
"""
import json
import os
import os.path as osp
import subprocess
from datetime import timedelta

import torch
import torch.distributed as dist
from mmengine.model import MMDistributedDataParallel

from dbbd.registry import MODEL_WRAPPERS
# the model averages its logged values itself (DBBDBaseModel.parse_losses);
# importable from here too
from dbbd.utils.dist import reduce_log_vars

__all__ = [
    'setup_distributed', 'DBBDDistributedDataParallel', 'reduce_log_vars',
    'needs_find_unused_parameters'
]

_LAUNCHERS = ('none', 'pytorch', 'slurm')


@MODEL_WRAPPERS.register_module()
class DBBDDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper, registered in the project's scope.

    The log variables of a step are averaged over ranks by the model's own
    ``parse_losses`` (:class:`dbbd.models.base.DBBDBaseModel` calls
    :func:`dbbd.utils.dist.reduce_log_vars`), before the optimizer step, so that the
    console log, TensorBoard and the non-finite loss check see the loss of
    the whole step. Gradients are untouched (DDP averages them)."""


# ----------------------------------------------------------------------
# find_unused_parameters
# ----------------------------------------------------------------------
def _explicit_find_unused(cfg):
    wrapper = cfg.get('model_wrapper_cfg') or {}
    if 'find_unused_parameters' in wrapper:
        return bool(wrapper['find_unused_parameters'])
    if cfg.get('find_unused_parameters') is not None:
        return bool(cfg.get('find_unused_parameters'))
    return None


def needs_find_unused_parameters(cfg):
    """Whether DDP needs ``find_unused_parameters=True`` for ``cfg``.

    DBBD uses every parameter in a step exactly when the batch has regions
    below the root: level 0 needs the input projection and the encoder,
    every deeper level the propagator, the context projection and (pooling
    the children) the aggregator; the heads always run. The number of
    levels and regions may differ between ranks: that is harmless, DDP only
    reduces gradients of fixed shapes. But when one rank's batch consists of
    single-region scenes only (trees of depth 0, or ``max_depth=0``), the
    propagator, context projection and aggregator get no gradient there;
    without ``find_unused_parameters`` that rank never launches their
    gradient all-reduce and training hangs (measured: gloo waits forever on
    the first step).

    So the answer is read from the training data: the ``depth`` in every
    scene's ``meta.json`` (after ``dataset.max_depth`` truncation, limited
    to ``max_scenes``). True when a scene has depth 0, when
    ``max_depth=0``, or when it cannot be told (data not prepared yet, not
    a :class:`DBBDDataset`, not a ``DBBD`` model); otherwise False, which
    spares DDP its per-step graph traversal and keeps its check that every
    parameter is used. An explicit ``model_wrapper_cfg.find_unused_parameters``
    (or mmengine's top-level ``find_unused_parameters``) always wins.

    Returns:
        (bool, str): the decision and a one-line reason.
    """
    explicit = _explicit_find_unused(cfg)
    if explicit is not None:
        return explicit, 'set in the config'
    model_type = str((cfg.get('model') or {}).get('type', ''))
    if model_type.split('.')[-1] != 'DBBD':
        return False, (f'model type {model_type!r} is not DBBD: mmengine\'s '
                       'default')
    ds = ((cfg.get('train_dataloader') or {}).get('dataset')) or {}
    if str(ds.get('type', '')).split('.')[-1] != 'DBBDDataset':
        return True, 'the training data is not a DBBDDataset (cannot tell)'
    max_depth = ds.get('max_depth')
    if max_depth == 0:
        return True, ('train_dataloader.dataset.max_depth=0: the propagator, '
                      'context projection and aggregator are never used')
    split_dir = osp.join(str(ds.get('data_root')), ds.get('split', 'train'))
    from dbbd.datasets.scene_io import list_prepared
    scenes = list_prepared(split_dir) if osp.isdir(split_dir) else []
    if not scenes:
        return True, f'{split_dir} is not prepared yet (cannot tell)'
    if ds.get('max_scenes') is not None:
        scenes = scenes[:int(ds['max_scenes'])]
    for scene in scenes:
        try:
            with open(osp.join(scene, 'meta.json')) as f:
                depth = json.load(f).get('depth')
        except (OSError, ValueError):
            depth = None
        if not isinstance(depth, int):
            return True, f'{scene}/meta.json has no depth (cannot tell)'
        if depth == 0:
            return True, (f'scene {osp.basename(scene)} is a single region '
                          '(depth 0): a rank whose batch holds only such '
                          'scenes leaves the propagator, context projection '
                          'and aggregator unused')
    return False, (f'all {len(scenes)} training scenes have depth >= 1: '
                   'every parameter is used on every rank in every step')


# ----------------------------------------------------------------------
# Launchers
# ----------------------------------------------------------------------
def _slurm_env():
    """Fill torch.distributed's ``env://`` variables from Slurm's (one task
    per process, as ``srun`` starts them; see ``tools/slurm_train.sh``).

    ``MASTER_ADDR`` / ``MASTER_PORT`` already in the environment win; else
    the first host of the job's node list and port 29500.
    """
    try:
        proc_id = int(os.environ['SLURM_PROCID'])
        ntasks = int(os.environ['SLURM_NTASKS'])
    except KeyError as e:
        raise RuntimeError(
            f'--launcher slurm: {e.args[0]} is not set; start the processes '
            'with srun (tools/slurm_train.sh)') from None
    if 'MASTER_ADDR' not in os.environ:
        node_list = os.environ.get('SLURM_JOB_NODELIST',
                                   os.environ.get('SLURM_NODELIST'))
        if not node_list:
            raise RuntimeError('--launcher slurm: SLURM_NODELIST is not set; '
                               'set MASTER_ADDR')
        try:
            out = subprocess.run(['scontrol', 'show', 'hostnames', node_list],
                                 capture_output=True, text=True, check=True,
                                 timeout=60).stdout.split()
        except (OSError, subprocess.SubprocessError) as e:
            raise RuntimeError(
                f'--launcher slurm: cannot resolve the master host of '
                f'{node_list} with scontrol ({e}); set MASTER_ADDR') from None
        if not out:
            raise RuntimeError(f'--launcher slurm: scontrol returned no host '
                               f'for {node_list}; set MASTER_ADDR')
        os.environ['MASTER_ADDR'] = out[0]
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['RANK'] = str(proc_id)
    os.environ['LOCAL_RANK'] = os.environ.get('SLURM_LOCALID', '0')


def _is_main():
    return os.environ.get('RANK', os.environ.get('SLURM_PROCID', '0')) == '0'


def setup_distributed(cfg):
    """Prepare ``cfg`` (and, on CPU, the process group) for ``cfg.launcher``.

    - ``none``: nothing distributed; on CPU the backend is set to gloo.
    - ``pytorch`` (torchrun) / ``slurm`` (srun): on CPU the gloo process
      group is started here (``env_cfg.dist_cfg.timeout`` is honoured); with
      a GPU mmengine starts NCCL itself. Either way ``model_wrapper_cfg``
      becomes :class:`DBBDDistributedDataParallel` (a type set in the config
      is kept) with ``broadcast_buffers=False`` (mmengine's default) and
      ``find_unused_parameters`` from :func:`needs_find_unused_parameters`;
      on CPU ``device_ids=None``.
    """
    launcher = cfg.get('launcher', 'none')
    if launcher not in _LAUNCHERS:
        raise ValueError(f'unknown launcher {launcher!r}; use none, pytorch '
                         'or slurm')
    cuda = torch.cuda.is_available()
    if cfg.get('env_cfg') is None:
        cfg.env_cfg = {}
    env_cfg = cfg.env_cfg
    if not cuda:
        dist_cfg = dict(env_cfg.get('dist_cfg') or {})
        dist_cfg['backend'] = 'gloo'
        env_cfg.dist_cfg = dist_cfg
    if launcher == 'none':
        return
    if not cuda:
        if launcher == 'slurm':
            _slurm_env()
        if not dist.is_initialized():
            kwargs = {}
            timeout = (env_cfg.get('dist_cfg') or {}).get('timeout')
            if timeout is not None:
                kwargs['timeout'] = timedelta(seconds=float(timeout))
            dist.init_process_group(backend='gloo', init_method='env://',
                                    **kwargs)

    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    # scoped: Runner.wrap_model looks the type up in mmengine's root
    # registry, which finds children only by their scope prefix
    wrapper.setdefault('type', 'dbbd.DBBDDistributedDataParallel')
    wrapper.setdefault('broadcast_buffers', False)
    find_unused, reason = needs_find_unused_parameters(cfg)
    wrapper['find_unused_parameters'] = find_unused
    if not cuda:
        wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if _is_main():
        from mmengine.logging import print_log
        print_log(f'DDP find_unused_parameters={find_unused}: {reason}',
                  logger='current')
