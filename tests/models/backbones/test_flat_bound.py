"""``DBBDTreeBackbone.flat_bound``: the benchmark's bound uses the layers a
training step uses, on the row counts of the batch's tree."""
import pytest
import torch

from model_helpers import make_batch, small_cfg


def _model(aggregator):
    from dbbd.registry import MODELS
    torch.manual_seed(0)
    return MODELS.build(small_cfg(aggregator=aggregator)).train()


def _trained(model):
    """Names of the backbone parameters that got a gradient."""
    return {n for n, p in model.backbone.named_parameters()
            if p.grad is not None}


@pytest.mark.parametrize('aggregator', [
    dict(type='Aggregator', mode='max'),
    dict(type='Aggregator', mode='attention', pre_mlp=True),
    dict(type='Aggregator', mode='mean', spatial_context=False),
], ids=['max', 'attention_pre_mlp', 'mean_no_context'])
def test_the_bound_trains_what_a_step_trains(aggregator):
    """Every backbone parameter a training step gives a gradient gets one
    from the bound, and no other: a layer added to the backbone and left
    out of the bound (or the other way round) fails here."""
    model = _model(aggregator)
    data = model.data_preprocessor(make_batch(dict(n=300), dict(n=200)),
                                   True)
    loss, _ = model.parse_losses(model(**data, mode='loss'))
    loss.backward()
    step_params = _trained(model)
    model.zero_grad(set_to_none=True)

    tree = data['inputs']['tree']
    bound = model.backbone.flat_bound(
        tree, generator=torch.Generator().manual_seed(0))
    d = model.backbone.out_channels
    regions = torch.randn(sum(lv.num_regions for lv in tree.levels), d,
                          requires_grad=True)
    point_feat, child = bound(regions)
    (point_feat.mean() + child.mean()).backward()
    assert _trained(model) == step_params
    assert regions.grad is not None


def test_the_bound_sees_the_rows_of_the_tree():
    """The encoder runs on every point twice (G2L roots, L2G leaves) plus
    every point below the roots once; the aggregator on every region below
    the roots. Counted here from the collated arrays."""
    model = _model(dict(type='Aggregator', mode='max'))
    batch = make_batch(dict(n=300), dict(n=200, max_depth=1))
    data = model.data_preprocessor(batch, True)
    point_region = batch['inputs']['point_region']  # (L, P), -1: none
    num_points = point_region.shape[1]
    below_roots = int((point_region[1:] >= 0).sum())
    children = sum(len(p) for p in batch['inputs']['region_parent'][1:])
    assert below_roots > 0 and children > 0
    tree = data['inputs']['tree']
    regions = torch.randn(sum(lv.num_regions for lv in tree.levels),
                          model.backbone.out_channels)
    point_feat, child = model.backbone.flat_bound(tree)(regions)
    assert point_feat.shape == (2 * num_points + below_roots,
                                model.backbone.out_channels)
    assert child.shape == (children, model.backbone.out_channels)


def test_with_a_scene_backbone_there_is_no_flat_bound():
    from dbbd.registry import MODELS
    cfg = small_cfg()
    cfg['backbone'].update(encoder=None, scene_backbone=dict(
        type='PointNetSceneBackbone', out_channels=16))
    backbone = MODELS.build(cfg).backbone
    with pytest.raises(ValueError, match='needs a point encoder'):
        backbone.flat_bound(None)
