"""Feature pictures: rasterisation, PCA colours, and the hook writing a real
TensorBoard image during a validation of the real config."""
import glob
import os.path as osp

import numpy as np
import pytest
import torch

from dbbd.evaluation.feature_vis import feature_image, pca_rgb, render_top_view


def test_top_view_keeps_the_highest_point_and_the_aspect():
    coord = np.array([[0, 0, 0.0], [0, 0, 1.0], [2, 1, 0.5]])
    colors = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1.0]])
    img = render_top_view(coord, colors, size=101, point_radius=0, margin=0)
    assert img.dtype == np.uint8 and img.shape == (51, 101, 3)
    # (0, 0) is the bottom-left pixel; the point at z = 1 hides z = 0
    assert img[50, 0].tolist() == [0, 255, 0]
    assert img[0, 100].tolist() == [0, 0, 255]
    assert (img == 255).all(axis=2).sum() == 51 * 101 - 2


def test_pca_colours_follow_the_feature_structure():
    g = torch.Generator().manual_seed(0)
    # two clusters in 32-d: the first component separates them
    feat = torch.randn(400, 32, generator=g) * 0.01
    feat[:200, 5] += 1.0
    rgb = pca_rgb(feat)
    assert rgb.shape == (400, 3) and rgb.min() >= 0 and rgb.max() <= 1
    assert abs(rgb[:200, 0].mean() - rgb[200:, 0].mean()) > 0.9
    np.testing.assert_array_equal(rgb, pca_rgb(feat.clone()))
    img = feature_image(torch.rand(400, 3, generator=g), feat, size=64)
    assert img.shape[1] == 64 and img.dtype == np.uint8


@pytest.fixture(scope='module')
def validated(demo_root, tmp_path_factory):
    """One epoch (two iterations and a validation) of the tiny small-mode
    model with the configs' evaluators and hooks (loss + probe metrics,
    collapse watch, picture), then one more validation."""
    from eval_helpers import build_runner, one_thread, tiny_cfg
    work = tmp_path_factory.mktemp('validated')
    with one_thread():
        runner = build_runner(tiny_cfg(demo_root, work, max_epochs=1))
        runner.train()
        metrics = runner.val_loop.run()
    runner.visualizer.close()  # flushes the TensorBoard writer
    return runner, metrics, str(work)


def test_config_validation_reports_loss_probe_and_collapse(validated):
    runner, metrics, work = validated
    assert {'loss', 'probe/miou', 'probe/acc', 'probe/miou_raw',
            'probe/acc_raw'} <= set(metrics)
    for kind in ('region', 'point'):
        for m in ('std', 'std_l2g', 'align', 'uniform'):
            assert f'collapse/{kind}_{m}' in metrics
    assert 0 <= metrics['probe/miou'] <= 1
    assert 0 < metrics['collapse/point_std'] < 1


def test_collapse_watch_on_the_real_runner_reads_the_models_embeddings(
        validated):
    """The hook's figures are those of the embeddings the validation loss
    compared, recomputed here from DBBD.predict batch by batch; the model
    is asked for them only while the hook watches."""
    from dbbd.evaluation.collapse import CollapseStats
    runner, metrics, work = validated
    model = runner.model
    assert model.return_embeddings is False  # switched off again
    stats = {k: CollapseStats(1024, seed=0) for k in ('region', 'point')}
    model.return_embeddings = True
    try:
        with torch.no_grad():
            for batch in runner.val_dataloader:
                out = model.val_step(batch)
                for kind, (g2l, l2g) in out[0]['embeddings'].items():
                    stats[kind].update(g2l, l2g)
    finally:
        model.return_embeddings = False
    for kind in ('region', 'point'):
        want = stats[kind].compute()
        for m in ('std', 'std_l2g', 'align', 'uniform'):
            assert metrics[f'collapse/{kind}_{m}'] == pytest.approx(
                want[m], rel=1e-9), (kind, m)
    assert want['dim'] == 16  # the tiny heads' width


def test_feature_picture_reaches_tensorboard(validated):
    from tensorboard.backend.event_processing.event_accumulator import \
        EventAccumulator
    runner, metrics, work = validated
    files = glob.glob(osp.join(work, '*', 'vis_data', 'events.out.*'))
    assert files, 'no TensorBoard event file'
    acc = EventAccumulator(files[0], size_guidance={'images': 0})
    acc.Reload()
    assert 'val_feature_pca' in acc.Tags()['images']
    image = acc.Images('val_feature_pca')[0]
    assert image.width > 100 and image.height > 50
    assert {'val/probe/miou', 'val/collapse/point_std'} <= set(
        acc.Tags()['scalars'])
    # LocalVisBackend keeps a PNG too
    assert glob.glob(osp.join(work, '*', 'vis_data', 'vis_image',
                              'val_feature_pca_1.png'))
