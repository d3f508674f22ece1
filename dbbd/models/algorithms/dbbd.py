"""DBBD: one encoder reads a region tree top-down (G2L) and bottom-up (L2G).

Method sections 3 and 4. Each tree level is one partition of the batch's
points, so a level of every scene is computed in one call per part:

- G2L (view 1), level 0: the roots, encoded from the projected raw
  features. Level ``l > 0``: ONE propagator call (every point gets its
  parent's feature by indexing), ONE context projection, ONE encoder call
  and its segment pooling, for all regions of all scenes. A point's G2L
  feature is its feature at its leaf level.
- L2G (view 2): ONE encoder call on all leaves of all levels (the leaves
  partition the points), then per level bottom-up ONE aggregator call that
  pools the children of every non-leaf region.

The only Python loops are over levels. The result equals walking each tree
region by region with the same parts (``tests/models/test_equivalence.py``
checks it against such a walk).
"""
from typing import List, Optional, Union

import torch
from mmengine.model import BaseModel
from torch import nn
from torch.utils.checkpoint import checkpoint

from dbbd.registry import MODELS

from ..utils import MLP, TreeIndex, index_tree

__all__ = ['DBBD']


def _build(cfg, **defaults):
    """Build ``cfg`` through MODELS, filling keys it leaves out."""
    if isinstance(cfg, nn.Module):
        return cfg
    cfg = dict(cfg)
    for key, value in defaults.items():
        cfg.setdefault(key, value)
    return MODELS.build(cfg)


def _check(name, attr, got, want):
    if got != want:
        raise ValueError(f'{name}.{attr} is {got} but must be {want}: set it '
                         'in the config, or leave it out to have it filled')


@MODELS.register_module()
class DBBD(BaseModel):
    """Dual-branch bi-directional pre-training on region trees.

    Args:
        encoder: point encoder config (see
            :class:`dbbd.models.encoders.BasePointEncoder`); ``in_channels``
            defaults to ``hidden_channels``. Its ``out_channels`` (D) is the
            width of every region and point feature.
        propagator: G2L propagator config; ``in_channels`` defaults to D.
        aggregator: L2G aggregator config; ``channels`` defaults to D.
        region_head: projection head of region features (one for all
            levels); ``in_channels`` defaults to D.
        point_head: projection head of point features; likewise.
        loss: loss config (``DBBDLoss``).
        in_channels: width of the raw point features ``feat`` (3: normals).
        hidden_channels: width the raw features are projected to before
            the encoder (96; small mode 64).
        with_cp: gradient checkpointing of each level's encoder pass
            (G2L: propagator + projection + encoder; L2G: projection +
            encoder): less memory, one more forward.
        data_preprocessor: default ``dict(type='DBBDDataPreprocessor')``.
        init_cfg: mmengine weight init config.

    Two projections are built here: ``input_proj`` lifts raw features to
    ``hidden_channels`` (G2L roots, L2G leaves), ``context_proj`` lifts
    ``cat(raw feature, propagated context)`` (G2L below the root); each is
    ``Linear -> LayerNorm -> GELU``.

    ``forward(inputs, data_samples=None, mode='tensor')`` takes the
    ``inputs`` dict of ``docs/data_format.md``:

    - ``'loss'``: both views -> the dict of :class:`DBBDLoss`.
    - ``'predict'``: a list with one dict per scene: ``scene_id``,
      ``point_feat`` (N_i, D) G2L, ``segment`` (N_i,), and when ``view2`` is
      present ``point_feat_l2g`` (N_i, D) and ``losses``: the loss dict of
      the whole batch plus its total ``loss`` (the same in every scene of
      the batch, detached).
    - ``'tensor'``: G2L features of view 1 only (see :meth:`extract_feat`).
    """

    def __init__(self, encoder: dict, propagator: dict, aggregator: dict,
                 region_head: dict, point_head: dict, loss: dict,
                 in_channels: int = 3, hidden_channels: int = 96,
                 with_cp: bool = False,
                 data_preprocessor: Optional[Union[dict, nn.Module]] = None,
                 init_cfg: Optional[dict] = None):
        if data_preprocessor is None:
            data_preprocessor = dict(type='DBBDDataPreprocessor')
        if isinstance(data_preprocessor, dict):
            # built here, not by BaseModel: BaseModel builds from mmengine's
            # root registry, which sees this project's modules only under
            # default_scope='dbbd'
            data_preprocessor = MODELS.build(data_preprocessor)
        super().__init__(data_preprocessor=data_preprocessor,
                         init_cfg=init_cfg)
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.with_cp = with_cp

        self.encoder = _build(encoder, in_channels=hidden_channels)
        _check('encoder', 'in_channels', self.encoder.in_channels,
               hidden_channels)
        d = self.encoder.out_channels
        self.propagator = _build(propagator, in_channels=d)
        _check('propagator', 'in_channels', self.propagator.in_channels, d)
        self.aggregator = _build(aggregator, channels=d)
        _check('aggregator', 'channels', self.aggregator.channels, d)
        self.region_head = _build(region_head, in_channels=d)
        _check('region_head', 'in_channels', self.region_head.in_channels, d)
        self.point_head = _build(point_head, in_channels=d)
        _check('point_head', 'in_channels', self.point_head.in_channels, d)
        self.criterion = _build(loss)

        self.input_proj = MLP(in_channels, [], hidden_channels,
                              last_norm_act=True)
        self.context_proj = MLP(in_channels + self.propagator.out_channels,
                                [], hidden_channels, last_norm_act=True)

    @property
    def out_channels(self):
        return self.encoder.out_channels

    # ------------------------------------------------------------------
    # the two branches
    # ------------------------------------------------------------------
    def _maybe_cp(self, fn, *args):
        if self.with_cp and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def _g2l_level(self, coord, feat, parent_feat, parent_center, lv):
        """Encode every region of one level; ``(A_l, D)``, ``(R_l, D)``."""
        if lv.rows is not None:
            point_coord = coord.index_select(0, lv.rows)
            feat = feat.index_select(0, lv.rows)
        else:
            point_coord = coord
        if parent_feat is None:
            x = self.input_proj(feat)
        else:
            rel_parent = point_coord - coord.index_select(
                0, parent_center).index_select(0, lv.row_parent)
            context = self.propagator(parent_feat, rel_parent, lv.row_parent)
            x = self.context_proj(feat, context)
        rel = point_coord - coord.index_select(0, lv.center).index_select(
            0, lv.region)
        return self.encoder(x, rel, lv.region, lv.num_regions)

    def g2l(self, view: dict, tree: TreeIndex) -> dict:
        """Global-to-local branch, top-down.

        Args:
            view: ``dict(coord (P, 3), feat (P, C))``.
            tree: the batch's :class:`TreeIndex`.

        Returns:
            dict: ``point_feat (P, D)`` (each point at its leaf level) and
            ``region_feat``, a list over levels of ``(R_l, D)``.
        """
        coord, feat = view['coord'], view['feat']
        region_feat: List[torch.Tensor] = []
        leaf_parts = []
        for l, lv in enumerate(tree.levels):
            if lv.num_regions == 0:
                region_feat.append(coord.new_zeros((0, self.out_channels)))
                continue
            parent_feat = region_feat[-1] if l else None
            parent_center = tree.levels[l - 1].center if l else None
            point_feat, feat_l = self._maybe_cp(self._g2l_level, coord, feat,
                                                parent_feat, parent_center,
                                                lv)
            region_feat.append(feat_l)
            leaf_parts.append(point_feat if lv.leaf_rows is None else
                              point_feat.index_select(0, lv.leaf_rows))
        point_feat = torch.cat(leaf_parts)
        if tree.point_order is not None:
            point_feat = point_feat.index_select(0, tree.point_order)
        return dict(point_feat=point_feat, region_feat=region_feat)

    def _encode_leaves(self, coord, feat, tree):
        rel = coord - coord.index_select(0, tree.leaf_center).index_select(
            0, tree.leaf_region)
        return self.encoder(self.input_proj(feat), rel, tree.leaf_region,
                            tree.num_leaves)

    def l2g(self, view: dict, tree: TreeIndex) -> dict:
        """Local-to-global branch, bottom-up. Same outputs as :meth:`g2l`.

        Leaves (of every level) are encoded in one call; a non-leaf region
        is never encoded: it is the aggregation of its children.
        """
        coord = view['coord']
        point_feat, leaf_feat = self._maybe_cp(self._encode_leaves, coord,
                                               view['feat'], tree)
        region_feat: List[Optional[torch.Tensor]] = [None] * tree.num_levels
        child = None
        for l in reversed(range(tree.num_levels)):
            lv = tree.levels[l]
            leaves = leaf_feat[tree.leaf_offset[l]:tree.leaf_offset[l + 1]]
            if child is None or child.shape[0] == 0:
                feat_l = leaves  # no children below: every region a leaf
            else:
                below = tree.levels[l + 1]
                offset = coord.index_select(0, below.center) - \
                    coord.index_select(0, lv.center).index_select(
                        0, below.parent)
                feat_l = self.aggregator(child, offset, below.parent,
                                         lv.num_regions)
                if leaves.shape[0]:
                    feat_l = feat_l.index_copy(0, lv.leaf_ids, leaves)
            region_feat[l] = child = feat_l
        return dict(point_feat=point_feat, region_feat=region_feat)

    # ------------------------------------------------------------------
    # modes
    # ------------------------------------------------------------------
    @staticmethod
    def index_tree(inputs: dict) -> TreeIndex:
        """The batch's :class:`TreeIndex` (shared by both views)."""
        return index_tree(inputs['point_region'], inputs['region_parent'],
                          inputs['region_center'])

    def forward(self, inputs: dict, data_samples: Optional[list] = None,
                mode: str = 'tensor'):
        if mode == 'loss':
            return self.loss(inputs, data_samples)
        if mode == 'predict':
            return self.predict(inputs, data_samples)
        if mode == 'tensor':
            return self.extract_feat(inputs)
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got "
                         f'{mode!r}')

    def _losses(self, g2l, l2g, sample_seed):
        sizes = [f.shape[0] for f in g2l['region_feat']]
        q = self.region_head(torch.cat(g2l['region_feat'])).split(sizes)
        k = self.region_head(torch.cat(l2g['region_feat'])).split(sizes)
        return self.criterion(list(q), list(k), g2l['point_feat'],
                              l2g['point_feat'], sample_seed,
                              self.point_head)

    def loss(self, inputs: dict, data_samples: Optional[list] = None):
        """Both branches and the loss dict (needs ``view2``)."""
        if 'view2' not in inputs:
            raise KeyError("mode='loss' needs inputs['view2'] (dual_view)")
        tree = self.index_tree(inputs)
        return self._losses(self.g2l(inputs['view1'], tree),
                            self.l2g(inputs['view2'], tree),
                            inputs['sample_seed'])

    def predict(self, inputs: dict, data_samples: Optional[list] = None):
        """One dict per scene, for metrics (see the class docstring)."""
        tree = self.index_tree(inputs)
        g2l = self.g2l(inputs['view1'], tree)
        feats = dict(point_feat=g2l['point_feat'])
        losses = None
        if 'view2' in inputs:
            l2g = self.l2g(inputs['view2'], tree)
            feats['point_feat_l2g'] = l2g['point_feat']
            parts = self._losses(g2l, l2g, inputs['sample_seed'])
            losses = dict(loss=sum(v for k, v in parts.items()
                                   if 'loss' in k))
            losses.update(parts)
            losses = {k: v.detach() for k, v in losses.items()}
        segment = inputs.get('segment')
        if segment is None:
            segment = torch.full((tree.num_points, ), -1, dtype=torch.long,
                                 device=inputs['offset'].device)
        feats['segment'] = segment
        sizes = torch.diff(inputs['offset']).tolist()
        split = {k: v.detach().split(sizes) for k, v in feats.items()}
        results = []
        for i in range(len(sizes)):
            sample = data_samples[i] if data_samples else {}
            res = dict(scene_id=sample.get('scene_id', str(i)))
            res.update({k: v[i] for k, v in split.items()})
            if losses is not None:
                res['losses'] = losses
            results.append(res)
        return results

    def extract_feat(self, inputs: dict) -> dict:
        """G2L features of view 1 (view 2 is not needed).

        Returns:
            dict: ``point_feat (P, D)``, ``region_feat`` list over levels of
            ``(R_l, D)``, and the batch's ``offset (B + 1,)`` and
            ``region_offset (L, B + 1)`` to split them per scene.
        """
        out = self.g2l(inputs['view1'], self.index_tree(inputs))
        out.update(offset=inputs['offset'],
                   region_offset=inputs['region_offset'])
        return out
