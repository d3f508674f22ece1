"""The linear probe sees what pre-training learned: a short, seeded
training of the tiny small-mode model on the synthetic rooms raises the
probe's mIoU above that of the same encoder at initialisation."""
import pytest

from dbbd.evaluation import LinearProbeMetric

ITERS = 40  # 20 epochs of the 4 training rooms, batch 2
LR = 5e-3


def probe(model, datasets):
    from eval_helpers import feed_metric

    # all 3,000 points of every room; fitted on scenes 0, 2, 4 (sorted
    # ids), scored on scenes 1, 3, 5
    return feed_metric(LinearProbeMetric(max_points_per_scene=3000), model,
                       datasets)


@pytest.fixture
def single_thread():
    from eval_helpers import one_thread
    with one_thread():
        yield


def test_training_raises_linear_probe_miou(demo_root, tmp_path,
                                           single_thread):
    from eval_helpers import build_runner, scene_dataset, tiny_cfg
    cfg = tiny_cfg(demo_root, tmp_path, randomness=dict(seed=0),
                   optim_wrapper=dict(optimizer=dict(lr=LR)))
    runner = build_runner(cfg)
    rooms = [scene_dataset(cfg, 'train'), scene_dataset(cfg, 'val')]
    before = probe(runner.model, rooms)

    optim = runner.build_optim_wrapper(cfg.optim_wrapper)
    losses, it = [], 0
    while it < ITERS:
        for batch in runner.train_dataloader:
            runner.model.train()
            log_vars = runner.model.train_step(batch, optim)
            losses.append(float(log_vars['loss'].detach()))
            it += 1
            if it == ITERS:
                break
    after = probe(runner.model, rooms)

    assert sum(losses[-4:]) < sum(losses[:4])  # it did train
    # measured on this data: +0.11 mIoU at seed 0; gains at each of seeds
    # 0..9 (smallest +0.01), accuracy +0.03 or more at each
    assert after['probe/miou'] > before['probe/miou'] + 0.03, (before, after)
    assert after['probe/acc'] > before['probe/acc'], (before, after)
    # the baseline does not depend on the encoder
    assert after['probe/miou_raw'] == before['probe/miou_raw']
