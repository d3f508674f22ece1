"""The mean over ranks of a training step's logged values, on the device.

The model's ``parse_losses`` (:class:`dbbd.models.base.DBBDBaseModel`)
calls :func:`reduce_log_vars`, so that the console log, TensorBoard and the
non-finite loss check see the loss of the whole step, not rank 0's.
"""
import re

import torch
import torch.distributed as dist

__all__ = ['reduce_log_vars', 'MAX_LOGGED_LEVELS']

#: Per-level log keys (``region_l{l}``): present only for the levels a
#: rank's batch has, so they travel in fixed slots with a count each.
_LEVEL_KEY = re.compile(r'^region_l(\d+)$')
MAX_LOGGED_LEVELS = 32


def reduce_log_vars(log_vars):
    """Average the logged values of one iteration over all ranks, on the
    device.

    mmengine logs what rank 0's ``train_step`` returned; with data split
    across ranks that is one rank's batch, not the step's loss. Here each
    key gets the mean over the ranks that logged it, with ONE
    ``all_reduce`` and no host synchronisation: the values travel in a
    vector of fixed layout, every key but the per-level ones (the same on
    every rank, as for every model of this project) in the order of
    their names, then ``MAX_LOGGED_LEVELS`` slots of per-level sums and
    counts (``region_l{l}`` exists only for the levels a rank's batch has).
    A rank returns its own keys; the loss keys exist on every rank, so
    all ranks see the same loss (and take the same decision on a NaN).

    The values are detached: gradients are not affected. Returns
    ``log_vars`` unchanged outside distributed training.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return log_vars
    world = dist.get_world_size()
    if world == 1:
        return log_vars
    tensors = [v for v in log_vars.values() if isinstance(v, torch.Tensor)]
    device = tensors[0].device if tensors else torch.device('cpu')

    def value(v):
        if isinstance(v, torch.Tensor):
            return v.detach().float().mean().to(device)
        return torch.tensor(float(v), device=device)

    fixed = sorted(k for k in log_vars if not _LEVEL_KEY.match(k))
    levels = {int(_LEVEL_KEY.match(k).group(1)): k for k in log_vars
              if _LEVEL_KEY.match(k)}
    if any(l >= MAX_LOGGED_LEVELS for l in levels):
        raise ValueError(f'reduce_log_vars: more than {MAX_LOGGED_LEVELS} '
                         'tree levels are logged')
    level_sum = torch.zeros(MAX_LOGGED_LEVELS, device=device)
    level_count = torch.zeros(MAX_LOGGED_LEVELS, device=device)
    if levels:
        idx = torch.tensor(sorted(levels), device=device)
        level_sum[idx] = torch.stack(
            [value(log_vars[levels[l]]) for l in sorted(levels)])
        level_count[idx] = 1.0
    parts = [torch.stack([value(log_vars[k]) for k in fixed])] if fixed \
        else []
    vector = torch.cat(parts + [level_sum, level_count])
    dist.all_reduce(vector)
    means = dict(zip(fixed, vector[:len(fixed)] / world))
    sums = vector[len(fixed):len(fixed) + MAX_LOGGED_LEVELS]
    counts = vector[len(fixed) + MAX_LOGGED_LEVELS:]
    for l, k in levels.items():
        means[k] = sums[l] / counts[l]
    out = type(log_vars)() if isinstance(log_vars, dict) else {}
    for key in log_vars:  # the original order
        out[key] = means[key]
    return out
