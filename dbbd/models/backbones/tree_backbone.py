"""The DBBD tree backbone: one network that reads a region tree top-down
(G2L) and bottom-up (L2G).

Method section 3. Each tree level is one partition of the batch's points, so
a level of every scene is computed in one call per part:

- G2L, level 0: the roots, encoded from the projected raw features. Level
  ``l > 0``: ONE propagator call (every point gets its parent's feature by
  indexing), ONE context projection, ONE encoder call and its segment
  pooling, for all regions of all scenes. A point's G2L feature is its
  feature at its leaf level.
- L2G: ONE encoder call on all leaves of all levels (the leaves partition
  the points), then per level bottom-up ONE aggregator call that pools the
  children of every non-leaf region.

The only Python loops are over levels. The result equals walking each tree
region by region with the same parts (``tests/models/test_equivalence.py``
checks it against such a walk).
"""
from typing import Callable, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import nn
from torch.utils.checkpoint import checkpoint

from dbbd.registry import MODELS
from dbbd.structures.tree_index import TreeIndex, tree_index_of
from dbbd.utils.config_check import check_int

from ..utils import MLP, segment_max, segment_mean
from ..utils.mask_token import MaskToken, check_unmasked

__all__ = ['DBBDTreeBackbone', 'build_part']

_POOLING = dict(max=segment_max, mean=segment_mean)


def build_part(cfg, **defaults):
    """Build ``cfg`` through MODELS, filling keys it leaves out."""
    if isinstance(cfg, nn.Module):
        return cfg
    cfg = dict(cfg)
    for key, value in defaults.items():
        cfg.setdefault(key, value)
    return MODELS.build(cfg)


def check_width(name, attr, got, want):
    """A part's width must equal the one its neighbours impose."""
    if got != want:
        raise ValueError(f'{name}.{attr} is {got} but must be {want}: set it '
                         'in the config, or leave it out to have it filled')


@MODELS.register_module()
class DBBDTreeBackbone(BaseModule):
    """Everything between raw point features and features per point and
    per region: projections, propagator, point encoder, aggregator.

    Args:
        encoder: point encoder config (see
            :class:`dbbd.models.encoders.BasePointEncoder`); ``in_channels``
            defaults to ``hidden_channels``. Its ``out_channels`` (D) is the
            width of every region and point feature. May be None with a
            ``scene_backbone``: then each region pools its points' projected
            features (``pooling``) and D is ``hidden_channels``.
        propagator: G2L propagator config; ``in_channels`` defaults to D.
        aggregator: L2G aggregator config; ``channels`` defaults to D.
        in_channels: width of the raw point features ``feat`` (3: normals).
        hidden_channels: width the point features are projected to before
            the encoder (96; small mode 64).
        scene_backbone: optional scene backbone config (SpUNet,
            ``PointNetSceneBackbone``; ``in_channels`` defaults to
            ``in_channels``): run once per view over the whole batch; the
            tree then reads its per-point features instead of the raw ones.
        pooling: 'max' or 'mean', the region pooling without an encoder.
        mask_token: learn a token that replaces the input features of the
            points a masking transform hid (``view['mask']``, see
            ``RandomPatchMask``); points and tree stay.
        with_cp: gradient checkpointing of each level's encoder pass
            (G2L: propagator + projection + encoder; L2G: projection +
            encoder): less memory, one more forward.
        init_cfg: mmengine weight init config.

    Two projections live here: ``input_proj`` lifts raw features to
    ``hidden_channels`` (G2L roots, L2G leaves), ``context_proj`` lifts
    ``cat(raw feature, propagated context)`` (G2L below the root); each is
    ``Linear -> LayerNorm -> GELU``.

    Public methods (nothing else reaches inside):

    - :meth:`g2l` and :meth:`l2g`: the two readings of a view over the
      batch's tree (pre-training uses both);
    - :meth:`forward`: per-point features of one view (downstream use);
    - :meth:`scene_backbone_weights`: where its scene backbone's tensors
      are in its state dict (``pretrained=`` of a model whose backbone is
      that scene backbone reads them);
    - :meth:`flat_bound`: its layers' arithmetic without the tree (the
      bound ``tools/benchmark.py`` times a step against).

    A *view* is ``dict(coord (P, 3), feat (P, in_channels), offset
    (B + 1,))``; the *tree*
    is the batch's :class:`~dbbd.structures.TreeIndex`
    (``inputs['tree']``, built by the collate function).
    """

    #: reads the batch's region tree: a downstream model calls it as
    #: ``backbone(inputs, view=...)`` (see :mod:`dbbd.models.segmentors`)
    needs_tree = True

    #: where the scene backbone's tensors are in this backbone's state dict
    #: (the attribute ``scene_backbone``)
    SCENE_BACKBONE_PREFIX = 'scene_backbone.'

    def __init__(self, encoder: Optional[dict], propagator: dict,
                 aggregator: dict, in_channels: int = 3,
                 hidden_channels: int = 96,
                 scene_backbone: Optional[dict] = None,
                 pooling: str = 'max', mask_token: bool = False,
                 with_cp: bool = False, init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        check_int('DBBDTreeBackbone', 'in_channels', in_channels)
        check_int('DBBDTreeBackbone', 'hidden_channels', hidden_channels)
        if pooling not in _POOLING:
            raise ValueError(f'DBBDTreeBackbone: pooling must be one of '
                             f'{sorted(_POOLING)}, got {pooling!r}')
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.with_cp = with_cp
        self.pooling = pooling

        self.mask_token = MaskToken(in_channels) if mask_token else None
        self.scene_backbone = None if scene_backbone is None else build_part(
            scene_backbone, in_channels=in_channels)
        point_channels = in_channels if self.scene_backbone is None else \
            self.scene_backbone.out_channels
        if encoder is None and self.scene_backbone is None:
            raise ValueError('DBBDTreeBackbone: encoder=None needs a '
                             'scene_backbone (whose features the regions '
                             'pool); give one of them')
        self.encoder = None if encoder is None else build_part(
            encoder, in_channels=hidden_channels)
        if self.encoder is not None:
            check_width('encoder', 'in_channels', self.encoder.in_channels,
                        hidden_channels)
        d = self.out_channels
        self.propagator = build_part(propagator, in_channels=d)
        check_width('propagator', 'in_channels', self.propagator.in_channels,
                    d)
        self.aggregator = build_part(aggregator, channels=d)
        check_width('aggregator', 'channels', self.aggregator.channels, d)

        self.input_proj = MLP(point_channels, [], hidden_channels,
                              last_norm_act=True)
        self.context_proj = MLP(point_channels + self.propagator.out_channels,
                                [], hidden_channels, last_norm_act=True)

    @property
    def out_channels(self) -> int:
        """D, the width of every point and region feature."""
        return self.hidden_channels if self.encoder is None else \
            self.encoder.out_channels

    @classmethod
    def scene_backbone_weights(cls, weights: dict) -> dict:
        """The scene backbone's entries of a state dict of this backbone
        (keys relative to the tree backbone), keys relative to the scene
        backbone; empty when the state dict has no scene backbone."""
        prefix = cls.SCENE_BACKBONE_PREFIX
        return {k[len(prefix):]: v for k, v in weights.items()
                if k.startswith(prefix)}

    def _encode(self, x, rel, region, num_regions):
        """The per-region encoder, or the plain pooling without one."""
        if self.encoder is not None:
            return self.encoder(x, rel, region, num_regions)
        return x, _POOLING[self.pooling](x, region, num_regions)

    def point_features(self, view: dict) -> dict:
        """``view`` with masked points' features replaced by the mask token,
        then ``feat`` replaced by the scene backbone's per-point features
        (one call over the whole batch); unchanged without either."""
        if self.mask_token is not None:
            view = self.mask_token(view)
        else:
            check_unmasked(view, 'DBBDTreeBackbone')
        if self.scene_backbone is None:
            return view
        if 'offset' not in view:
            raise KeyError("a scene backbone needs the view's scene "
                           "boundaries: view['offset'] (B + 1,), as "
                           'dbbd_collate makes it')
        return dict(view, feat=self.scene_backbone(view['coord'],
                                                   view['feat'],
                                                   view['offset']))

    def _outputs(self, point_feat, region_feat, view):
        out = dict(point_feat=point_feat, region_feat=region_feat)
        if self.scene_backbone is not None:
            # the scene backbone's own per-point features (what a
            # segmentation config fine-tunes), for losses that read them
            out['scene_feat'] = view['feat']
        return out

    def _maybe_cp(self, fn, *args):
        if self.with_cp and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    # ------------------------------------------------------------------
    # G2L
    # ------------------------------------------------------------------
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
        return self._encode(x, rel, lv.region_index(), lv.num_regions)

    def g2l(self, view: dict, tree: TreeIndex) -> dict:
        """Global-to-local reading, top-down.

        Args:
            view: ``dict(coord (P, 3), feat (P, C))``.
            tree: the batch's :class:`TreeIndex`.

        Returns:
            dict: ``point_feat (P, D)`` (each point at its leaf level),
            ``region_feat``, a list over levels of ``(R_l, D)``, and with a
            scene backbone ``scene_feat (P, C)``, its per-point output.
        """
        view = self.point_features(view)
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
        return self._outputs(point_feat, region_feat, view)

    # ------------------------------------------------------------------
    # L2G
    # ------------------------------------------------------------------
    def _encode_leaves(self, coord, feat, tree):
        rel = coord - coord.index_select(0, tree.leaf_center).index_select(
            0, tree.leaf_region)
        return self._encode(self.input_proj(feat), rel, tree.leaf_index(),
                            tree.num_leaves)

    def l2g(self, view: dict, tree: TreeIndex) -> dict:
        """Local-to-global reading, bottom-up. Same outputs as :meth:`g2l`.

        Leaves (of every level) are encoded in one call; a non-leaf region
        is never encoded: it is the aggregation of its children.
        """
        view = self.point_features(view)
        coord = view['coord']
        point_feat, leaf_feat = self._maybe_cp(self._encode_leaves, coord,
                                               view['feat'], tree)
        region_feat: List[Optional[torch.Tensor]] = [None] * tree.num_levels
        child = None
        for l in reversed(range(tree.num_levels)):
            lv = tree.levels[l]
            leaves = leaf_feat.index_select(0, tree.leaf_pos[l])
            if child is None or child.shape[0] == 0:
                feat_l = leaves  # no children below: every region a leaf
            else:
                below = tree.levels[l + 1]
                offset = coord.index_select(0, below.center) - \
                    coord.index_select(0, lv.center).index_select(
                        0, below.parent)
                feat_l = self.aggregator(child, offset, below.parent,
                                         lv.num_regions)
                if lv.num_leaves:
                    feat_l = feat_l.index_copy(0, lv.leaf_ids, leaves)
            region_feat[l] = child = feat_l
        return self._outputs(point_feat, region_feat, view)

    # ------------------------------------------------------------------
    # the benchmark's bound
    # ------------------------------------------------------------------
    def flat_bound(self, tree: TreeIndex, device=None,
                   generator: Optional[torch.Generator] = None
                   ) -> Callable[[torch.Tensor], Tuple[torch.Tensor,
                                                       torch.Tensor]]:
        """This backbone's layer arithmetic on the row counts of ``tree``,
        without the tree (the *flat bound* of ``tools/benchmark.py``).

        Every layer runs once on all the rows it sees over all levels, with
        the same split first layers as :meth:`g2l` and :meth:`l2g`; what a
        tree walk adds is left out: the gathers of parent and region
        features (a broadcast stands in), the segment pooling, the
        per-level calls and the assembly of leaf rows. Needs a per-region
        encoder (with a scene backbone the bound is the scene backbone
        alone: :meth:`point_features`).

        The stand-in inputs (random rows: raw features of the ``2 P`` G2L
        root and L2G leaf rows and of the ``A`` G2L rows below the roots,
        their coordinates, parent offsets, child offsets) are drawn now,
        from ``generator``, and moved to ``device``.

        Returns:
            ``fn(region_feat) -> (point_feat, child_feat)``: with stand-in
            region features ``region_feat (sum_l R_l, D)`` (the parents the
            propagator reads, the children the aggregator reads), the
            encoder's point features ``(2 P + A, D)`` and the aggregator's
            per-child features ``(sum_{l>0} R_l, D)``.
        """
        if self.encoder is None:
            raise ValueError('DBBDTreeBackbone.flat_bound: needs a point '
                             'encoder; with a scene backbone the bound is '
                             'the scene backbone alone (point_features)')
        p = tree.num_points
        rows = sum(lv.num_rows for lv in tree.levels[1:])  # G2L non-root
        sizes = [lv.num_regions for lv in tree.levels]
        d = self.out_channels

        def rand(*shape):
            return torch.randn(*shape, generator=generator).to(device)

        raw_all = rand(2 * p, self.in_channels)  # every point twice
        raw = rand(rows, self.in_channels)
        coord = rand(2 * p + rows, 3)
        parent_coord = rand(rows, 3)
        offset = rand(sum(sizes[1:]), 3)
        prop = self.propagator.mlp.layers
        agg = self.aggregator

        def step(region_feat):
            # propagator: parent part on the region rows, broadcast instead
            # of gathered, coordinate part on the point rows
            w = prop[0].weight
            table = F.linear(region_feat, w[:, :d], prop[0].bias)
            h = F.linear(parent_coord, w[:, d:])
            h = h + table.mean(0)
            for layer in prop[1:]:
                h = layer(h)
            x = torch.cat([self.input_proj(raw_all),
                           self.context_proj(raw, h)])
            point_feat = self.encoder.mlp(x, coord)
            child = region_feat[sizes[0]:]
            if agg.pre_mlp is not None:
                child = agg.pre_mlp(child)
            if agg.pos_mlp is not None:
                child = child + agg.pos_mlp(offset)
            if agg.score_mlp is not None:
                child = child * agg.score_mlp(child)
            return point_feat, child

        return step

    # ------------------------------------------------------------------
    # downstream
    # ------------------------------------------------------------------
    def forward(self, inputs: dict, view: str = 'view1') -> torch.Tensor:
        """Per-point features of one view of a collated batch.

        Args:
            inputs: the ``inputs`` of :func:`dbbd.datasets.dbbd_collate`
                (``inputs[view]`` and the tree).
            view: which view (``'view1'``).

        Returns:
            point_feat (P, D): the G2L feature of every point, in point
            order.
        """
        return self.g2l(inputs[view], tree_index_of(inputs))['point_feat']
