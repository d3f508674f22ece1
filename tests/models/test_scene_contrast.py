"""Masked views and the point-contrast baseline (SceneContrast)."""
import numpy as np
import pytest
import torch
from mmengine.optim import OptimWrapper

from dbbd.registry import MODELS, TRANSFORMS

from model_helpers import make_batch, make_scene, small_cfg


def _masked_batch(ratio=0.4, seed=0, **scene):
    """Two scenes whose views carry masks drawn by RandomPatchMask on each
    view's own coordinates."""
    from dbbd.datasets import dbbd_collate
    samples = []
    for i in range(2):
        s = make_scene(seed=seed + i, **scene)
        for v in ('view1', 'view2'):
            t = TRANSFORMS.build(dict(type='RandomPatchMask', ratio=ratio,
                                      patch_size=0.5))
            out = t(dict(coord=s[v]['coord'],
                         rng=np.random.default_rng([seed, i, v == 'view2'])))
            s[v]['mask'] = out['mask']
        samples.append(s)
    return dbbd_collate(samples), samples


def test_patch_mask_hides_exactly_the_chosen_patches_per_view():
    rng = np.random.default_rng(0)
    coord = (rng.random((2000, 3)) * 4).astype(np.float32)
    t = TRANSFORMS.build(dict(type='RandomPatchMask', ratio=0.4,
                              patch_size=1.0))
    out = t(dict(coord=coord, rng=np.random.default_rng(5)))
    mask = out['mask']
    # written out: patches are the unit cells; hidden ones wholly hidden
    cell = [tuple(c) for c in np.floor(coord).astype(int)]
    cells = {}
    for c, m in zip(cell, mask):
        cells.setdefault(c, set()).add(bool(m))
    assert all(len(v) == 1 for v in cells.values())  # whole patches
    hidden = sum(1 for v in cells.values() if True in v)
    assert hidden == round(0.4 * len(cells))
    # another view (another rng) hides other patches, independently
    other = t(dict(coord=coord, rng=np.random.default_rng(6)))['mask']
    assert not np.array_equal(mask, other)
    with pytest.raises(ValueError, match='ratio'):
        TRANSFORMS.build(dict(type='RandomPatchMask', ratio=1.5))


def test_view_crop_hides_the_outside_of_a_box_and_keeps_every_point():
    rng = np.random.default_rng(1)
    coord = (rng.random((3000, 3)) * [4, 3, 2]).astype(np.float32)
    t = TRANSFORMS.build(dict(type='RandomViewCrop', ratio=0.5))
    out = t(dict(coord=coord.copy(), rng=np.random.default_rng(2)))
    assert out['coord'].shape == coord.shape  # nothing dropped
    kept = coord[~out['mask']]
    span = kept.max(0) - kept.min(0)
    assert np.all(span[:2] <= np.array([4, 3]) * 0.5 + 1e-5)
    assert 0.15 < (~out['mask']).mean() < 0.35  # about a quarter


def test_masked_dbbd_trains_a_step_with_aligned_regions():
    batch, samples = _masked_batch()
    cfg = small_cfg()
    cfg['backbone']['mask_token'] = True
    model = MODELS.build(cfg)
    inputs = model.data_preprocessor(batch, True)['inputs']
    # the masks hide different points in the two views; points, tree and
    # regions are those of the unmasked batch
    m1, m2 = inputs['view1']['mask'], inputs['view2']['mask']
    assert m1.any() and m2.any() and not torch.equal(m1, m2)
    plain = make_batch(dict(seed=0), dict(seed=1))['inputs']
    assert torch.equal(inputs['point_region'], plain['point_region'])
    # masked points read the token, the others their own features
    view = model.backbone.point_features(inputs['view1'])
    token = model.backbone.mask_token.token
    assert torch.equal(view['feat'][m1], token.expand(int(m1.sum()), -1))
    assert torch.equal(view['feat'][~m1], inputs['view1']['feat'][~m1])
    wrapper = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    before = token.detach().clone()
    log_vars = model.train_step(batch, wrapper)
    assert torch.isfinite(log_vars['loss'])
    assert not torch.equal(before, model.backbone.mask_token.token)
    # a masked batch without a token is one clear error
    with pytest.raises(ValueError, match='mask_token=True'):
        MODELS.build(small_cfg())(**model.data_preprocessor(batch, True),
                                  mode='loss')


def _contrast_cfg(**kwargs):
    cfg = dict(type='SceneContrast',
               backbone=dict(type='PointNetSceneBackbone',
                             hidden_dims=[8, 16], out_channels=16),
               head=dict(type='ProjectionHead', out_channels=8),
               num_samples=64, temperature=0.4)
    cfg.update(kwargs)
    return cfg


def test_matched_point_infonce_equals_a_direct_computation():
    model = MODELS.build(_contrast_cfg()).double()
    batch = make_batch(dict(n=300), dict(n=200))
    inputs = model.data_preprocessor(batch, True)['inputs']
    for v in ('view1', 'view2'):
        for k in ('coord', 'feat'):
            inputs[v][k] = inputs[v][k].double()
    losses = model(inputs, mode='loss')
    assert set(losses) == {'loss_contrast'}
    # written out: the backbone on each view, the sampled matches, the
    # head, cosine similarities / t, cross-entropy against the diagonal
    f1 = model.backbone(inputs['view1']['coord'], inputs['view1']['feat'],
                        inputs['offset'])
    f2 = model.backbone(inputs['view2']['coord'], inputs['view2']['feat'],
                        inputs['offset'])
    idx = inputs['sample_order'][:64]
    q, k = model.head(f1[idx]), model.head(f2[idx])
    logits = q @ k.t() / 0.4
    want = -torch.log_softmax(logits, 1).diagonal().mean()
    torch.testing.assert_close(losses['loss_contrast'], want)


@pytest.mark.parametrize('backbone,recon', [('pointnet', False),
                                             ('pointnet', True),
                                             ('spunet', True)])
def test_scene_contrast_trains_a_step_everywhere(backbone, recon):
    torch.manual_seed(0)
    cfg = _contrast_cfg(mask_token=recon, reconstruct=recon)
    if backbone == 'spunet':
        cfg['backbone'] = dict(type='SpUNet', base_channels=8,
                               channels=[8, 16, 16, 16], layers=[1, 1, 1, 1],
                               voxel_size=0.3)
    model = MODELS.build(cfg)
    batch = _masked_batch()[0] if recon else make_batch(dict(n=300),
                                                        dict(n=200))
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    assert ('loss_recon' in losses) == recon
    total, _ = model.parse_losses(losses)
    assert torch.isfinite(total)
    total.backward()
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []
    preds = model(**data, mode='predict')
    assert len(preds) == 2 and preds[0]['point_feat'].shape[1] == 16
    assert 'loss' in preds[0]['losses']


def test_dbbd_reconstructs_masked_inputs_from_the_scene_backbone():
    torch.manual_seed(0)
    batch, _ = _masked_batch()
    cfg = small_cfg()
    cfg['backbone'].update(mask_token=True, encoder=None, scene_backbone=dict(
        type='SpUNet', base_channels=8, channels=[8, 16, 16, 12],
        layers=[1, 1, 1, 1], voxel_size=0.3))
    model = MODELS.build(dict(cfg, reconstruct=True, recon_weight=0.5))
    inputs = model.data_preprocessor(batch, True)['inputs']
    losses = model(inputs, mode='loss')
    # written out: the SpUNet on each view with masked points replaced by
    # the token, the linear head, squared error against the view's own
    # input features averaged over channels, then over the masked points
    # only, the two views averaged and weighted
    want = 0
    for v in ('view1', 'view2'):
        view = inputs[v]
        mask = view['mask']
        feat = torch.where(mask[:, None], model.backbone.mask_token.token,
                           view['feat'])
        out = model.backbone.scene_backbone(view['coord'], feat,
                                            view['offset'])
        err = (model.recon_head(out) - view['feat']).pow(2).mean(1)
        want = want + err[mask].mean()
    torch.testing.assert_close(losses['loss_recon'], 0.5 * 0.5 * want)
    # the term trains the scene backbone: its gradient alone reaches it
    losses['loss_recon'].backward()
    grads = [p.grad for n, p in model.named_parameters()
             if n.startswith('backbone.scene_backbone.')]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    # unmasked batches give no term; reconstruct without a token is an error
    plain = make_batch(dict(seed=0), dict(seed=1))
    assert 'loss_recon' not in model(**model.data_preprocessor(plain, True),
                                     mode='loss')
    with pytest.raises(ValueError, match='mask_token=True'):
        MODELS.build(dict(small_cfg(), reconstruct=True))


@pytest.mark.parametrize('ema', [None, 0.9])
def test_dbbd_reconstructs_every_points_inputs_without_a_mask(ema):
    """``reconstruct='all'``: every point of the reading(s) with a
    gradient (both views without a teacher, the student's view 1 with
    one), no mask or token needed."""
    from dbbd.utils.config_check import ConfigError
    torch.manual_seed(0)
    cfg = small_cfg()
    cfg['backbone'].update(encoder=None, scene_backbone=dict(
        type='SpUNet', base_channels=8, channels=[8, 16, 16, 12],
        layers=[1, 1, 1, 1], voxel_size=0.3))
    model = MODELS.build(dict(cfg, reconstruct='all', recon_weight=0.5,
                              ema_momentum=ema))
    batch = make_batch(dict(seed=0), dict(seed=1))
    inputs = model.data_preprocessor(batch, True)['inputs']
    losses = model(inputs, mode='loss')
    # written out: the SpUNet on each view's own features, the linear head,
    # squared error averaged over channels, then over every point
    errs = []
    for v in ('view1', 'view2'):
        view = inputs[v]
        out = model.backbone.scene_backbone(view['coord'], view['feat'],
                                            view['offset'])
        errs.append((model.recon_head(out) - view['feat']).pow(2).mean())
    want = 0.5 * (errs[0] if ema is not None else 0.5 * (errs[0] + errs[1]))
    torch.testing.assert_close(losses['loss_recon'], want)
    losses['loss_recon'].backward()
    grads = [p.grad for n, p in model.named_parameters()
             if n.startswith('backbone.scene_backbone.')]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ConfigError, match="reconstruct must be.*'everything'"):
        MODELS.build(dict(small_cfg(), reconstruct='everything'))
