"""Collapse measures on collapsed and on spread embeddings, and the hook's
warning."""
import math
from types import SimpleNamespace
from unittest import mock

import pytest
import torch
import torch.nn.functional as F

from dbbd.evaluation.collapse import (CollapseStats, alignment,
                                      embedding_std, uniformity)

D = 64


def spread(n, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, D, generator=g), dim=1)


def test_collapsed_embeddings():
    z = torch.randn(1, D).expand(500, D) * 3  # one direction, any scale
    assert embedding_std(z) == pytest.approx(0, abs=1e-7)
    assert alignment(z, z) == pytest.approx(0, abs=1e-12)
    assert uniformity(z) == pytest.approx(0, abs=1e-9)


def test_spread_embeddings():
    z = spread(4000, 0)
    # each coordinate of a uniform unit vector has variance 1 / D
    assert embedding_std(z) == pytest.approx(1 / math.sqrt(D), rel=0.03)
    # ||x - y||^2 = 2 - 2 cos, cos ~ N(0, 1 / D): log E = -4 + 8 / D
    assert uniformity(z) == pytest.approx(-4 + 8 / D, abs=0.1)
    assert alignment(z, z) == pytest.approx(0, abs=1e-12)
    assert alignment(z, spread(4000, 1)) == pytest.approx(2, abs=0.05)


def test_streamed_stats_match_the_one_shot_values():
    a, b = spread(900, 2), spread(900, 3)
    stats = CollapseStats(max_uniform_points=2000)
    for i in range(0, 900, 300):  # three batches
        stats.update(a[i:i + 300], b[i:i + 300])
    res = stats.compute()
    assert res['dim'] == D
    assert res['std'] == pytest.approx(embedding_std(a), rel=1e-9)
    assert res['std_l2g'] == pytest.approx(embedding_std(b), rel=1e-9)
    assert res['align'] == pytest.approx(alignment(a, b), rel=1e-9)
    assert -4 < res['uniform'] < -3.5
    assert CollapseStats().compute() == {}


def fake_runner():
    from mmengine.logging import MessageHub
    hub = MessageHub.get_instance(f'collapse_test_{id(object())}')
    return SimpleNamespace(message_hub=hub, logger=mock.MagicMock(),
                           model=SimpleNamespace(return_embeddings=False))


def run_hook(g2l, l2g):
    from dbbd.engine.hooks import CollapseWatchHook
    hook = CollapseWatchHook()
    runner = fake_runner()
    hook.before_val_epoch(runner)
    # the hook asks the model for its embeddings during the validation
    assert runner.model.return_embeddings is True
    emb = dict(region=(g2l, l2g), point=(g2l, l2g))
    hook.after_val_iter(runner, 0, data_batch={},
                        outputs=[dict(embeddings=emb)])
    metrics = {'loss': 1.0}
    hook.after_val_epoch(runner, metrics)
    assert runner.model.return_embeddings is False  # restored
    return runner, metrics


def test_hook_logs_scalars_and_warns_only_on_collapse():
    runner, metrics = run_hook(spread(300, 4), spread(300, 5))
    keys = {f'collapse/{k}_{m}' for k in ('region', 'point')
            for m in ('std', 'std_l2g', 'align', 'uniform')}
    assert keys <= set(metrics) and metrics['loss'] == 1.0
    scalar = runner.message_hub.get_scalar('val/collapse/point_std')
    assert scalar.current() == pytest.approx(1 / math.sqrt(D), rel=0.1)
    runner.logger.warning.assert_not_called()

    same = torch.ones(300, D)
    runner, metrics = run_hook(same, same)
    assert metrics['collapse/point_std'] == pytest.approx(0, abs=1e-7)
    assert metrics['collapse/point_uniform'] == pytest.approx(0, abs=1e-9)
    msg = runner.logger.warning.call_args[0][0]
    assert 'collapse' in msg.lower() and 'G2L and L2G' in msg
