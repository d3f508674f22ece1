"""The level-batched DBBD equals a plain region-by-region tree walk.

The reference below follows method section 3 literally: it recurses over
each scene's tree, calling the model's own submodules on one region at a
time (G2L top-down from the root, L2G bottom-up from the leaves), then
computes the losses of section 4 level by level. Same weights, float64.
"""
import pytest
import torch

from dbbd.models.utils import tree_index_of
from dbbd.registry import MODELS

from model_helpers import make_batch, small_cfg

# scene 0: 3 levels below the root; scene 1: 2. min_points_to_split stops
# some regions early, so leaves sit at mixed depths in both.
SCENES = (dict(n=420, max_depth=3, min_points_to_split=40),
          dict(n=260, max_depth=2, min_points_to_split=70))


def _double(batch):
    def cast(x):
        if isinstance(x, dict):
            return {k: cast(v) for k, v in x.items()}
        if isinstance(x, list):
            return [cast(v) for v in x]
        if torch.is_tensor(x) and x.is_floating_point():
            return x.double()
        return x
    return dict(inputs=cast(batch['inputs']),
                data_samples=batch['data_samples'])


class Reference:
    """Region-by-region DBBD over a collated batch (global ids)."""

    def __init__(self, model, inputs):
        self.m = model
        self.b = model.backbone
        self.inp = inputs
        self.pr = inputs['point_region']
        self.parent = inputs['region_parent']
        self.center = inputs['region_center']
        self.L = self.pr.shape[0]
        p = self.pr.shape[1]
        d = model.out_channels
        self.g2l_region = [[None] * len(c) for c in self.center]
        self.l2g_region = [[None] * len(c) for c in self.center]
        self.num_points = p
        self.g2l_point = []  # (point indices, features) of each leaf
        self.l2g_point = []
        self.d = d
        # with a scene backbone, the tree reads its per-point features of
        # the whole batch (one call per view, as the model makes it)
        self.feat = {}
        for v in ('view1', 'view2'):
            view = inputs[v]
            sb = self.b.scene_backbone
            self.feat[v] = view['feat'] if sb is None else sb(
                view['coord'], view['feat'], view['offset'])

    def encode(self, x, coord):
        """The per-region encoder on one region's rows, or (without one)
        the pooling written out: max or mean of the rows."""
        m = self.b
        if m.encoder is not None:
            pf, rf = m.encoder(x, coord, self.zeros(len(x)), 1)
            return pf, rf[0]
        pooled = x.max(0).values if m.pooling == 'max' else x.mean(0)
        return x, pooled

    def points(self, l, r):
        return (self.pr[l] == r).nonzero().squeeze(1)

    def children(self, l, r):
        if l + 1 >= self.L:
            return []
        return (self.parent[l + 1] == r).nonzero().squeeze(1).tolist()

    def zeros(self, n):
        return torch.zeros(n, dtype=torch.long)

    def g2l(self, l, r, parent_feat=None, parent_center=None):
        m, view = self.b, self.inp['view1']
        pts = self.points(l, r)
        coord, feat = view['coord'][pts], self.feat['view1'][pts]
        if parent_feat is None:
            x = m.input_proj(feat)
        else:
            context = m.propagator(parent_feat[None], coord - parent_center,
                                   self.zeros(len(pts)))
            x = m.context_proj(torch.cat([feat, context], 1))
        center = view['coord'][self.center[l][r]]
        pf, rf = self.encode(x, coord - center)
        self.g2l_region[l][r] = rf
        kids = self.children(l, r)
        if not kids:
            self.g2l_point.append((pts, pf))
        for c in kids:
            self.g2l(l + 1, c, rf, center)

    def l2g(self, l, r):
        m, view = self.b, self.inp['view2']
        kids = self.children(l, r)
        center = view['coord'][self.center[l][r]]
        if not kids:
            pts = self.points(l, r)
            x = m.input_proj(self.feat['view2'][pts])
            pf, feat = self.encode(x, view['coord'][pts] - center)
            self.l2g_point.append((pts, pf))
        else:
            child = torch.stack([self.l2g(l + 1, c) for c in kids])
            offset = torch.stack([view['coord'][self.center[l + 1][c]]
                                  for c in kids]) - center
            feat = m.aggregator(child, offset, self.zeros(len(kids)), 1)[0]
        self.l2g_region[l][r] = feat
        return feat

    def scatter(self, parts):
        pts = torch.cat([p for p, _ in parts])
        assert torch.equal(pts.sort().values, torch.arange(self.num_points))
        out = torch.zeros(self.num_points, self.d, dtype=torch.float64)
        return out.index_copy(0, pts, torch.cat([f for _, f in parts]))

    def run(self):
        for root in range(len(self.center[0])):
            self.g2l(0, root)
            self.l2g(0, root)
        def stack(rows):
            return torch.stack(rows) if rows else torch.zeros(
                0, self.d, dtype=torch.float64)

        g2l = dict(point_feat=self.scatter(self.g2l_point),
                   region_feat=[stack(r) for r in self.g2l_region])
        l2g = dict(point_feat=self.scatter(self.l2g_point),
                   region_feat=[stack(r) for r in self.l2g_region])
        return g2l, l2g

    def loss(self, g2l, l2g):
        """Section 4, level by level, levels of < 2 regions skipped."""
        m = self.m
        crit = m.criterion
        info = crit.region_loss.info_nce
        levels = []
        for q, k in zip(g2l['region_feat'], l2g['region_feat']):
            if len(q) >= 2:
                levels.append(info(m.region_head(q), m.region_head(k)))
        region = sum(levels) / len(levels)
        idx = crit.point_loss.sample(self.inp['sample_order'])
        point = info(m.point_head(g2l['point_feat'][idx]),
                     m.point_head(l2g['point_feat'][idx]))
        return crit.alpha * region + crit.beta * point, levels


def _check(model, batch, with_grads=True):
    model = model.double()
    data = model.data_preprocessor(_double(batch), True)
    inputs = data['inputs']
    tree = tree_index_of(inputs)
    g2l = model.backbone.g2l(inputs['view1'], tree)
    l2g = model.backbone.l2g(inputs['view2'], tree)
    ref = Reference(model, inputs)
    rg2l, rl2g = ref.run()
    tol = dict(atol=1e-9, rtol=1e-9)
    for got, want in ((g2l, rg2l), (l2g, rl2g)):
        torch.testing.assert_close(got['point_feat'], want['point_feat'],
                                   **tol)
        assert len(got['region_feat']) == len(want['region_feat'])
        for a, b in zip(got['region_feat'], want['region_feat']):
            torch.testing.assert_close(a, b, **tol)
    losses = model(**data, mode='loss')
    total, _ = model.parse_losses(losses)
    ref_total, ref_levels = ref.loss(rg2l, rl2g)
    torch.testing.assert_close(total, ref_total, **tol)
    per_level = [v for k, v in losses.items() if k.startswith('region_l')]
    torch.testing.assert_close(torch.stack(per_level),
                               torch.stack(ref_levels).detach(), **tol)
    if with_grads:
        params = [p for p in model.parameters() if p.requires_grad]
        got = torch.autograd.grad(total, params, allow_unused=True)
        want = torch.autograd.grad(ref_total, params, allow_unused=True)
        for p, a, b in zip(params, got, want):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, atol=1e-8, rtol=1e-7)
    return tree


@pytest.mark.parametrize('mode', ['max', 'mean', 'attention'])
@pytest.mark.parametrize('spatial', [True, False])
def test_level_batched_equals_recursive_walk(mode, spatial):
    batch = make_batch(*SCENES)
    model = MODELS.build(small_cfg(aggregator=dict(
        type='Aggregator', mode=mode, spatial_context=spatial,
        pre_mlp=mode == 'attention')))
    tree = _check(model, batch)
    # the batch has what the test is about: scenes of different depths,
    # and leaves above the deepest level
    assert tree.num_levels == 4
    leaves_per_level = torch.diff(torch.tensor(tree.leaf_offset))
    assert (leaves_per_level[1:3] > 0).all()
    assert tree.point_order is not None


def test_two_stage_encoder_and_mean_pooling_equal_recursive_walk():
    batch = make_batch(*SCENES)
    model = MODELS.build(small_cfg(encoder=dict(
        type='TwoStagePointNetEncoder', first_dims=[8, 12],
        second_dims=[16], out_channels=16, pooling='mean')))
    tree = _check(model, batch)  # asserts features, loss and gradients
    assert tree.num_levels == 4


def test_points_out_of_depth_first_order_give_the_same_result():
    """Rows of a region need not be contiguous: shuffle the points."""
    batch = make_batch(*SCENES)
    inp = batch['inputs']
    off = inp['offset'].tolist()
    g = torch.Generator().manual_seed(0)
    perm = torch.cat([a + torch.randperm(b - a, generator=g)
                      for a, b in zip(off[:-1], off[1:])])
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(len(perm))
    shuffled = dict(inp)
    del shuffled['tree']  # the index of the unshuffled points
    for v in ('view1', 'view2'):
        shuffled[v] = {k: t if k == 'offset' else t[perm]
                       for k, t in inp[v].items()}
    shuffled['point_region'] = inp['point_region'][:, perm]
    shuffled['segment'] = inp['segment'][perm]
    shuffled['region_center'] = [inv[c] for c in inp['region_center']]
    batch_s = dict(inputs=shuffled, data_samples=batch['data_samples'])
    model = MODELS.build(small_cfg(aggregator=dict(type='Aggregator',
                                                   mode='attention')))
    _check(model, batch_s, with_grads=False)
    # and the shuffled batch's features are the original's, permuted
    a = model(**model.data_preprocessor(_double(batch)), mode='tensor')
    b = model(**model.data_preprocessor(_double(batch_s)), mode='tensor')
    torch.testing.assert_close(b['point_feat'], a['point_feat'][perm])
    for x, y in zip(a['region_feat'], b['region_feat']):
        torch.testing.assert_close(x, y)


SCENE_BACKBONES = dict(
    pointnet=dict(type='PointNetSceneBackbone', hidden_dims=[8, 12],
                  out_channels=10),
    spunet=dict(type='SpUNet', base_channels=8, channels=[8, 16, 16, 10],
                layers=[1, 1, 1, 1], voxel_size=0.3))


@pytest.mark.parametrize('scene,encoder', [('pointnet', True),
                                           ('pointnet', False),
                                           ('spunet', False)])
def test_scene_backbone_case_equals_recursive_walk(scene, encoder):
    """The tree reads a scene backbone's features (PointNet over the
    scene, or SpUNet), with a per-region encoder on top or plain max
    pooling."""
    cfg = small_cfg(aggregator=dict(type='Aggregator', mode='max'))
    cfg['backbone']['scene_backbone'] = SCENE_BACKBONES[scene]
    if not encoder:
        cfg['backbone']['encoder'] = None
    model = MODELS.build(cfg)
    assert model.backbone.scene_backbone.in_channels == 3
    assert (model.backbone.encoder is None) != encoder
    tree = _check(model, make_batch(*SCENES))  # features, loss, grads
    assert tree.num_levels == 4
