"""Point Transformer V3: serialized patch attention over the voxels of whole
scenes.

Wu et al., "Point Transformer V3: Simpler, Faster, Stronger", CVPR 2024.
The voxels of a batch are *serialized*: sorted along space-filling curves
(:mod:`dbbd.models.sparse.serialization`: z-order, Hilbert and their
x/y-transposed variants), then each attention layer cuts its curve's order
into patches of ``patch_size`` voxels and attends within each patch. The
blocks of a stage take the orders in turn; the list of orders is shuffled
at every stage of a training pass (*shuffle order*). Before attention, each
block adds a submanifold sparse convolution of its input (*xCPE*, through
:mod:`dbbd.models.sparse`, either backend). Stages are joined by serialized
pooling (the voxels of each parent grid cell, found from the code, max
pooled) and, in the decoder, unpooling (each voxel gets its parent's
feature plus a projection of its own encoder feature).

The scene-backbone convention of this project: ``forward(coord (P, 3),
feat (P, C), offset (B + 1,)) -> (P, D)``, grid sampling inside
(:func:`~dbbd.models.sparse.voxelize`, features averaged per voxel), every
point getting its voxel's output feature. Attention runs through
``torch.nn.functional.scaled_dot_product_attention``: no flash-attn, any
device.

Parameter names and shapes are those of Pointcept's ``PT-v3m1``
(``PointTransformerV3``) for the same settings, so its checkpoints load
without renaming (``docs/ptv3.md`` lists which released ones fit which
config). Where this implementation differs from Pointcept's (orders shuffled
in training only, scenes smaller than a patch masked rather than cut to the
smallest scene, features averaged per voxel) is listed there too.
"""
import dataclasses
from collections import OrderedDict
from typing import Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn

from dbbd.registry import MODELS

from ..sparse import (SparseSequential, SparseTensor, SubMConv3d, VoxelSet,
                      set_backend, voxelize)
from ..sparse.serialization import MAX_DEPTH, ORDERS, encode
from ..utils import segment_max, segment_mean, segment_sum

__all__ = ['PointTransformerV3', 'SerializedLevel', 'SerializedAttention',
           'SerializedPooling', 'SerializedUnpooling', 'Block', 'DropPath',
           'serialize', 'patch_layout']


def _bn(channels):
    # Pointcept's PTv3 BatchNorm settings
    return nn.BatchNorm1d(channels, eps=1e-3, momentum=0.01)


# ----------------------------------------------------------------------
# Serialized voxels
# ----------------------------------------------------------------------
@dataclasses.dataclass
class SerializedLevel:
    """The voxels of one resolution of a batch, in every serialization
    order.

    Attributes:
        feat (N, C): one row per voxel.
        voxels: :class:`~dbbd.models.sparse.VoxelSet` of the rows, coords
            ``(N, 4)`` = (scene, x, y, z) on this level's grid (for xCPE).
        counts (B,): long, voxels per scene.
        code (K, N): int64 code of each row in each of the K orders, the
            scene index in the top bits.
        order (K, N): long, ``order[k, j]`` is the row at position ``j`` of
            order ``k`` (rows sorted by code: scene by scene along the
            curve).
        inverse (K, N): long, the position of each row in order ``k``.
        depth: bits per coordinate in ``code``.
        parent: the finer level this one was pooled from (None at the
            finest).
        cluster (N_parent,): long, the row here of each row of ``parent``.
        cache: patch layouts of this level, by patch size (shared by the
            copies :meth:`replace_feat` makes).
    """
    feat: torch.Tensor
    voxels: VoxelSet
    counts: torch.Tensor
    code: torch.Tensor
    order: torch.Tensor
    inverse: torch.Tensor
    depth: int
    parent: Optional['SerializedLevel'] = None
    cluster: Optional[torch.Tensor] = None
    cache: dict = dataclasses.field(default_factory=dict)

    def replace_feat(self, feat):
        """The same voxels and orders with new ``feat (N, C')``."""
        return dataclasses.replace(self, feat=feat)

    def sparse(self):
        """``feat`` as a :class:`~dbbd.models.sparse.SparseTensor` on this
        level's voxels (their kernel maps are cached on them)."""
        return SparseTensor(self.feat, voxels=self.voxels)


def _sorted_orders(code, shuffle):
    """``code (K, N)`` -> ``(code, order, inverse)``, the K orders in a
    random sequence when ``shuffle``."""
    order = torch.argsort(code, dim=1)
    positions = torch.arange(code.shape[1], device=code.device).expand_as(
        order)
    inverse = torch.empty_like(order).scatter_(1, order, positions)
    if shuffle and code.shape[0] > 1:
        perm = torch.randperm(code.shape[0]).to(code.device)
        code, order, inverse = code[perm], order[perm], inverse[perm]
    return code, order, inverse


def serialize(feat, voxels, orders, shuffle=False):
    """The finest :class:`SerializedLevel` of a batch's voxels.

    Args:
        feat (N, C): voxel features.
        voxels: :class:`~dbbd.models.sparse.VoxelSet`, coords (scene, x, y,
            z) non-negative.
        orders: names from :data:`~dbbd.models.sparse.serialization.ORDERS`.
        shuffle: put the orders in a random sequence (training).

    The depth (bits per coordinate) is that of the largest coordinate of
    the batch, as Pointcept's serialization takes it.
    """
    coords = voxels.coords
    grid = coords[:, 1:]
    depth = int(grid.max()).bit_length() if len(voxels) else 0
    if depth > MAX_DEPTH:
        raise ValueError(
            f'PointTransformerV3: a scene spans {int(grid.max()) + 1} voxels '
            f'along an axis; serialization codes hold at most '
            f'{2 ** MAX_DEPTH}: use a larger voxel_size or crop the scene')
    code = torch.stack([encode(grid, coords[:, 0], depth, o)
                        for o in orders])
    code, order, inverse = _sorted_orders(code, shuffle)
    counts = torch.bincount(coords[:, 0], minlength=voxels.batch_size)
    return SerializedLevel(feat, voxels, counts, code, order, inverse, depth)


@dataclasses.dataclass
class PatchLayout:
    """Where each voxel goes in the patches of one level and patch size.

    Attributes:
        patch_size: P, the slots of a patch: the configured patch size, or
            the largest scene's voxel count when every scene is smaller.
        pad (S,): long, for each patch slot (``S = num_patches * P``) the
            position (in serialized order) of the voxel it holds.
        unpad (N,): long, the slot of each serialized position.
        key_mask (num_patches, P): bool, False on the slots that hold no
            voxel of their patch (only scenes of fewer than P voxels have
            them); None when every slot is real.
    """
    pad: torch.Tensor
    unpad: torch.Tensor
    key_mask: Optional[torch.Tensor]
    patch_size: int


def patch_layout(counts, patch_size):
    """The patches of a batch of serialized scenes, as the paper pads them.

    Each scene's voxels, in serialized order, are cut into patches of
    ``P = patch_size``: ``[0, P)``, ``[P, 2P)``, ... A scene of ``n > P``
    voxels with ``r = n % P > 0`` gets ``ceil(n / P)`` patches, the last
    being its last ``P`` voxels (its padding slots repeat the ``P - r``
    voxels before its ``r`` own ones; those keep the output of their own
    patch). A scene of ``n <= P`` voxels is one patch of ``n`` voxels: P
    slots, the ``P - n`` after the voxels masked out as keys. When every
    scene has fewer than ``patch_size`` voxels (deep stages of small
    scenes), P is the largest scene's count, so that no patch is mostly
    padding. Patches never mix scenes.

    Args:
        counts (B,): long, voxels per scene (scenes stored one after the
            other in serialized order).
        patch_size: P.

    Returns:
        :class:`PatchLayout`.
    """
    device = counts.device
    counts = counts.long()
    p = max(min(int(patch_size), int(counts.max()) if counts.numel() else 1),
            1)
    n_patches = torch.where(counts > 0, torch.div(counts + p - 1, p,
                                                  rounding_mode='floor'), 0)
    padded = n_patches * p
    start = torch.cumsum(counts, 0) - counts
    pad_start = torch.cumsum(padded, 0) - padded
    total = int(padded.sum())
    scenes = torch.arange(counts.numel(), device=device)
    slot_scene = torch.repeat_interleave(scenes, padded, output_size=total)
    t = torch.arange(total, device=device) - pad_start[slot_scene]
    n = counts[slot_scene]
    real = t < n
    # a padding slot of a scene larger than a patch holds the voxel P
    # positions back (its last patch is its last P voxels); one of a scene
    # smaller than a patch holds its first voxel, masked out
    local = torch.where(real, t, torch.where(n > p, t - p, 0))
    pad = start[slot_scene] + local
    valid = real | (n > p)
    key_mask = None if bool(valid.all()) else valid.view(-1, p)
    num = int(counts.sum())
    pos_scene = torch.repeat_interleave(scenes, counts, output_size=num)
    unpad = torch.arange(num, device=device) + (pad_start - start)[pos_scene]
    return PatchLayout(pad, unpad, key_mask, p)


# ----------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------
class DropPath(nn.Module):
    """Stochastic depth on the rows of ``(N, C)``: in training, each row is
    zeroed with probability ``p`` and the others scaled by ``1 / (1 - p)``.
    A row is a voxel, as in Pointcept's PTv3 (its drop path sees the
    feature matrix of the whole batch)."""

    def __init__(self, p=0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        keep = 1 - self.p
        mask = torch.empty(x.shape[0], 1, device=x.device).bernoulli_(keep)
        return x * (mask / keep).to(x.dtype)

    def extra_repr(self):
        return f'p={self.p}'


class SerializedAttention(nn.Module):
    """Multi-head self-attention within the patches of one serialization
    order.

    Args:
        channels: C (divisible by ``num_heads``).
        num_heads: H.
        patch_size: P, voxels per patch (see :func:`patch_layout`).
        qkv_bias: bias of the ``qkv`` projection.
        qk_scale: scale of the logits; default ``(C / H) ** -0.5``.
        attn_drop: dropout on the attention weights (training).
        proj_drop: dropout after the output projection (training).
        order_index: which of the level's (shuffled) orders to follow.

    Parameters (Pointcept's names): ``qkv (3C, C)``, ``proj (C, C)``.

    ``forward(feat (N, C), level) -> (N, C)``: the rows of ``level`` sorted
    by its order ``order_index``, patched, attended per patch and head with
    ``scaled_dot_product_attention``, put back in row order and projected.
    """

    def __init__(self, channels, num_heads, patch_size, qkv_bias=True,
                 qk_scale=None, attn_drop=0.0, proj_drop=0.0, order_index=0):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f'PointTransformerV3: {channels} channels do not '
                             f'split into {num_heads} heads; give channel '
                             'widths divisible by their num_head')
        self.channels = channels
        self.num_heads = num_heads
        self.patch_size = int(patch_size)
        self.scale = qk_scale or (channels // num_heads) ** -0.5
        self.attn_drop = float(attn_drop)
        self.order_index = order_index
        self.qkv = nn.Linear(channels, channels * 3, bias=qkv_bias)
        self.proj = nn.Linear(channels, channels)
        self.proj_drop = nn.Dropout(proj_drop)

    def layout(self, level):
        """The level's :class:`PatchLayout` for this patch size (cached on
        the level)."""
        key = ('patches', self.patch_size)
        layout = level.cache.get(key)
        if layout is None:
            layout = patch_layout(level.counts, self.patch_size)
            level.cache[key] = layout
        return layout

    def forward(self, feat, level):
        h, c = self.num_heads, self.channels
        layout = self.layout(level)
        p = layout.patch_size
        k = self.order_index % level.order.shape[0]
        rows = level.order[k].index_select(0, layout.pad)
        slots = layout.unpad.index_select(0, level.inverse[k])
        qkv = self.qkv(feat).index_select(0, rows)
        # (S, 3C) -> 3 x (num_patches, H, P, C / H)
        q, k_, v = qkv.view(-1, p, 3, h, c // h).permute(2, 0, 3, 1, 4)
        mask = None
        if layout.key_mask is not None:
            mask = layout.key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(
            q, k_, v, attn_mask=mask, scale=self.scale,
            dropout_p=self.attn_drop if self.training else 0.0)
        out = out.transpose(1, 2).reshape(-1, c).index_select(0, slots)
        return self.proj_drop(self.proj(out))

    def extra_repr(self):
        return (f'heads={self.num_heads}, patch_size={self.patch_size}, '
                f'order_index={self.order_index}')


class FeedForward(nn.Module):
    """``fc2(drop(act(fc1(x))))`` then dropout; Pointcept's ``MLP``."""

    def __init__(self, channels, hidden_channels, drop=0.0):
        super().__init__()
        self.fc1 = nn.Linear(channels, hidden_channels)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_channels, channels)
        self.drop = nn.Dropout(drop)

    def forward(self, x):
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class Block(nn.Module):
    """One PTv3 block: xCPE, then attention and feed-forward, each residual
    with LayerNorm (before it when ``pre_norm``, after the sum otherwise)
    and drop path.

    ``x = x + cpe(x)``; ``x = x + drop_path(attn(norm1(x)))``;
    ``x = x + drop_path(mlp(norm2(x)))``. ``cpe`` is a 3x3x3 submanifold
    convolution with bias, a Linear and a LayerNorm.

    Parameters (Pointcept's names; the single-module ``Sequential`` wrappers
    exist for them): ``cpe.0.weight (C, 3, 3, 3, C)``, ``cpe.0.bias``,
    ``cpe.1`` (Linear), ``cpe.2`` (LayerNorm), ``norm1.0``, ``attn.qkv``,
    ``attn.proj``, ``norm2.0``, ``mlp.0.fc1 (C * mlp_ratio, C)``,
    ``mlp.0.fc2``.

    ``forward(level) -> level`` with new ``feat (N, C)``.
    """

    def __init__(self, channels, num_heads, patch_size=48, mlp_ratio=4.0,
                 qkv_bias=True, qk_scale=None, attn_drop=0.0, proj_drop=0.0,
                 drop_path=0.0, pre_norm=True, order_index=0):
        super().__init__()
        self.channels = channels
        self.pre_norm = pre_norm
        self.cpe = SparseSequential(
            SubMConv3d(channels, channels, 3, bias=True),
            nn.Linear(channels, channels), nn.LayerNorm(channels))
        self.norm1 = nn.Sequential(nn.LayerNorm(channels))
        self.attn = SerializedAttention(
            channels, num_heads, patch_size, qkv_bias=qkv_bias,
            qk_scale=qk_scale, attn_drop=attn_drop, proj_drop=proj_drop,
            order_index=order_index)
        self.norm2 = nn.Sequential(nn.LayerNorm(channels))
        self.mlp = nn.Sequential(FeedForward(
            channels, int(channels * mlp_ratio), drop=proj_drop))
        self.drop_path = DropPath(drop_path)

    def forward(self, level):
        feat = level.feat + self.cpe(level.sparse()).feat
        shortcut = feat
        if self.pre_norm:
            feat = self.norm1(feat)
        feat = shortcut + self.drop_path(self.attn(feat, level))
        if not self.pre_norm:
            feat = self.norm1(feat)
        shortcut = feat
        if self.pre_norm:
            feat = self.norm2(feat)
        feat = shortcut + self.drop_path(self.mlp(feat))
        if not self.pre_norm:
            feat = self.norm2(feat)
        return level.replace_feat(feat)


_REDUCE = dict(sum=segment_sum, mean=segment_mean, max=segment_max)


class SerializedPooling(nn.Module):
    """Grid pooling by ``stride`` (a power of 2), parents from the code.

    The voxels whose codes agree above their last ``3 * log2(stride)`` bits
    lie in one parent cell of the ``stride``-times coarser grid (both curves
    are hierarchical): each parent gets the ``reduce`` of its children's
    ``proj`` features, then BatchNorm and GELU; its codes are its children's
    shifted right, so the coarse level is serialized without encoding again
    (its order sequence shuffled anew in training when ``shuffle_orders``).

    Parameters (Pointcept's names): ``proj (C_out, C_in)`` with bias,
    ``norm.0`` (BatchNorm).

    ``forward(level) -> coarse level`` (its ``parent`` is ``level``, its
    ``cluster`` maps ``level``'s rows to its own).
    """

    def __init__(self, in_channels, out_channels, stride=2, reduce='max',
                 shuffle_orders=True):
        super().__init__()
        if stride < 2 or stride & (stride - 1):
            raise ValueError(f'PointTransformerV3: stride entries must be '
                             f'powers of 2 (2, 4, 8), got {stride}')
        if reduce not in _REDUCE and reduce != 'min':
            raise ValueError(f'PointTransformerV3: pooling reduce must be '
                             f"one of 'sum', 'mean', 'min', 'max', got "
                             f'{reduce!r}')
        self.stride = stride
        self.reduce = reduce
        self.shuffle_orders = shuffle_orders
        self.proj = nn.Linear(in_channels, out_channels)
        self.norm = nn.Sequential(_bn(out_channels))
        self.act = nn.Sequential(nn.GELU())

    def forward(self, level):
        bits = self.stride.bit_length() - 1
        if bits > level.depth:
            bits = 0   # a single cell already: nothing to merge
        code = level.code >> (3 * bits)
        parents, cluster = torch.unique(code[0], sorted=True,
                                        return_inverse=True)
        m, n = parents.numel(), cluster.numel()
        rows = torch.arange(n, device=cluster.device)
        head = torch.full((m,), n, dtype=torch.long,
                          device=cluster.device).scatter_reduce_(
            0, cluster, rows, 'amin')
        code = code.index_select(1, head)
        coords = level.voxels.coords.index_select(0, head)
        coords = torch.cat([coords[:, :1], coords[:, 1:] >> bits], 1)
        x = self.proj(level.feat)
        if self.reduce == 'min':
            x = -segment_max(-x, cluster, m)
        else:
            x = _REDUCE[self.reduce](x, cluster, m)
        x = self.act(self.norm(x))
        code, order, inverse = _sorted_orders(
            code, self.shuffle_orders and self.training)
        voxels = VoxelSet(coords, level.voxels.batch_size, check=False)
        counts = torch.bincount(coords[:, 0],
                                minlength=level.voxels.batch_size)
        return SerializedLevel(x, voxels, counts, code, order, inverse,
                               level.depth - bits, parent=level,
                               cluster=cluster)


class SerializedUnpooling(nn.Module):
    """Back to the finer level a :class:`SerializedPooling` came from: each
    fine voxel gets ``proj_skip(its own feature) + proj(its parent's)``,
    each ``proj`` being Linear, BatchNorm and GELU.

    Parameters (Pointcept's names): ``proj.0 (C_out, C_in)``, ``proj.1``
    (BatchNorm), ``proj_skip.0 (C_out, C_skip)``, ``proj_skip.1``.

    ``forward(level) -> level.parent`` with ``feat (N_parent, C_out)``.
    """

    def __init__(self, in_channels, skip_channels, out_channels):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_channels, out_channels),
                                  _bn(out_channels), nn.GELU())
        self.proj_skip = nn.Sequential(nn.Linear(skip_channels, out_channels),
                                       _bn(out_channels), nn.GELU())

    def forward(self, level):
        parent = level.parent
        up = self.proj(level.feat).index_select(0, level.cluster)
        return parent.replace_feat(self.proj_skip(parent.feat) + up)


class Embedding(nn.Module):
    """The stem: a 5x5x5 submanifold convolution (no bias), BatchNorm,
    GELU. Parameters: ``stem.conv.weight (C, 5, 5, 5, C_in)``,
    ``stem.norm``."""

    def __init__(self, in_channels, embed_channels):
        super().__init__()
        self.stem = SparseSequential(OrderedDict(
            conv=SubMConv3d(in_channels, embed_channels, 5, bias=False),
            norm=_bn(embed_channels), act=nn.GELU()))

    def forward(self, level):
        return level.replace_feat(self.stem(level.sparse()).feat)


class _Stage(nn.Sequential):
    """A stage's modules in order, passing a :class:`SerializedLevel`."""


def _tuple(name, value, length):
    value = tuple(value) if isinstance(value, (list, tuple)) else (value, )
    if len(value) != length:
        raise ValueError(f'PointTransformerV3: {name} needs {length} '
                         f'entries (one per stage), got {value}')
    return value


@MODELS.register_module()
class PointTransformerV3(nn.Module):
    """Point Transformer V3 scene backbone: points in, per-point features
    out.

    The batch is voxelised inside (:func:`~dbbd.models.sparse.voxelize`:
    a voxel per occupied ``voxel_size`` cell of each scene, features
    averaged), serialized in every order of ``order``, embedded (5x5x5
    submanifold convolution), encoded by ``len(enc_depths)`` stages (each
    after the first starts with a :class:`SerializedPooling` by
    ``stride[s - 1]``) of :class:`Block` s, and decoded by
    ``len(enc_depths) - 1`` stages (each starts with a
    :class:`SerializedUnpooling`); each point gets its voxel's output
    feature. Block ``i`` of a stage follows order ``i % len(order)`` of the
    stage's sequence, which training shuffles at every stage.

    Args:
        in_channels: C of the point features.
        order: serialization order names (one or several of 'z',
            'z-trans', 'hilbert', 'hilbert-trans').
        stride: pooling stride before each encoder stage after the first.
        enc_depths, enc_channels, enc_num_head, enc_patch_size: blocks,
            width, attention heads and patch size of each encoder stage.
        dec_depths, dec_channels, dec_num_head, dec_patch_size: the same per
            decoder stage, stage ``s`` decoding to encoder stage ``s``'s
            voxels (so ``dec_channels[0]`` is the output width).
        mlp_ratio: feed-forward hidden width over channels.
        qkv_bias, qk_scale, attn_drop, proj_drop: attention settings (see
            :class:`SerializedAttention`).
        drop_path: stochastic depth, rising linearly from 0 to this over
            the encoder's blocks (and over the decoder's, from its last
            block to its first).
        pre_norm: LayerNorm before attention / feed-forward (else after).
        shuffle_orders: shuffle the order sequence at each stage of a
            training pass (evaluation keeps the given sequence).
        enc_mode: no decoder; every encoder stage's features are carried
            back to the finest voxels and concatenated (feature up-casting),
            so the output has ``sum(enc_channels)`` channels: for probing.
        voxel_size: grid sampling cell edge in metres (Pointcept's
            ``GridSample(grid_size=...)``).
        backend: 'torch' (default), 'spconv' or 'auto', for every sparse
            convolution (see :mod:`dbbd.models.sparse.conv`).

    Attributes:
        in_channels, out_channels: C and D (``dec_channels[0]``, or
            ``sum(enc_channels)`` with ``enc_mode``).
        num_stages: encoder stages.
        order: the order names.
    """

    def __init__(self, in_channels: int,
                 order: Union[str, Sequence[str]] = ('z', 'z-trans'),
                 stride: Sequence[int] = (2, 2, 2, 2),
                 enc_depths: Sequence[int] = (2, 2, 2, 6, 2),
                 enc_channels: Sequence[int] = (32, 64, 128, 256, 512),
                 enc_num_head: Sequence[int] = (2, 4, 8, 16, 32),
                 enc_patch_size: Sequence[int] = (48, 48, 48, 48, 48),
                 dec_depths: Sequence[int] = (2, 2, 2, 2),
                 dec_channels: Sequence[int] = (64, 64, 128, 256),
                 dec_num_head: Sequence[int] = (4, 4, 8, 16),
                 dec_patch_size: Sequence[int] = (48, 48, 48, 48),
                 mlp_ratio: float = 4, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, drop_path: float = 0.3,
                 pre_norm: bool = True, shuffle_orders: bool = True,
                 enc_mode: bool = False, voxel_size: float = 0.02,
                 backend: str = 'torch'):
        super().__init__()
        order = (order, ) if isinstance(order, str) else tuple(order)
        bad = [o for o in order if o not in ORDERS]
        if not order or bad:
            raise ValueError(f'PointTransformerV3: order must name one or '
                             f'more of {ORDERS}, got {order}')
        num = len(enc_depths)
        if num < 1:
            raise ValueError('PointTransformerV3: enc_depths needs at least '
                             'one stage')
        enc_channels = _tuple('enc_channels', enc_channels, num)
        enc_num_head = _tuple('enc_num_head', enc_num_head, num)
        enc_patch_size = _tuple('enc_patch_size', enc_patch_size, num)
        stride = _tuple('stride', stride, num - 1)
        if not enc_mode:
            dec_depths = _tuple('dec_depths', dec_depths, num - 1)
            dec_channels = _tuple('dec_channels', dec_channels, num - 1)
            dec_num_head = _tuple('dec_num_head', dec_num_head, num - 1)
            dec_patch_size = _tuple('dec_patch_size', dec_patch_size,
                                    num - 1)
        if not voxel_size or voxel_size <= 0:
            raise ValueError(f'PointTransformerV3: voxel_size must be > 0, '
                             f'got {voxel_size}')
        self.in_channels = in_channels
        self.order = order
        self.num_stages = num
        self.shuffle_orders = shuffle_orders
        self.enc_mode = enc_mode
        self.voxel_size = float(voxel_size)
        block = dict(mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                     qk_scale=qk_scale, attn_drop=attn_drop,
                     proj_drop=proj_drop, pre_norm=pre_norm)

        self.embedding = Embedding(in_channels, enc_channels[0])
        rates = torch.linspace(0, drop_path, sum(enc_depths),
                               device='cpu').tolist()  # also under meta
        self.enc = _Stage()
        for s in range(num):
            stage = _Stage()
            if s > 0:
                stage.add_module('down', SerializedPooling(
                    enc_channels[s - 1], enc_channels[s], stride[s - 1],
                    shuffle_orders=shuffle_orders))
            first = sum(enc_depths[:s])
            for i in range(enc_depths[s]):
                stage.add_module(f'block{i}', Block(
                    enc_channels[s], enc_num_head[s], enc_patch_size[s],
                    drop_path=rates[first + i], order_index=i % len(order),
                    **block))
            self.enc.add_module(f'enc{s}', stage)
        if enc_mode:
            self.dec = None
            self.out_channels = sum(enc_channels)
        else:
            rates = torch.linspace(0, drop_path, sum(dec_depths),
                                   device='cpu').tolist()
            widths = list(dec_channels) + [enc_channels[-1]]
            self.dec = _Stage()
            for s in reversed(range(num - 1)):
                stage = _Stage()
                stage.add_module('up', SerializedUnpooling(
                    widths[s + 1], enc_channels[s], widths[s]))
                first = sum(dec_depths[:s])
                stage_rates = rates[first:first + dec_depths[s]][::-1]
                for i in range(dec_depths[s]):
                    stage.add_module(f'block{i}', Block(
                        widths[s], dec_num_head[s], dec_patch_size[s],
                        drop_path=stage_rates[i],
                        order_index=i % len(order), **block))
                self.dec.add_module(f'dec{s}', stage)
            self.out_channels = widths[0]
        self.backend = backend
        set_backend(self, backend)

    def adapt_pretrained(self, weights):
        """How ``pretrained=`` reads a file's backbone tensors (see
        :func:`~dbbd.engine.pretrained.load_pretrained_backbone`):
        as they are, except that an encoder-only model (``enc_mode``) leaves
        out the decoder (``dec.*``) of a full network's file, so a full
        pre-training can be probed encoder-only.

        Returns:
            ``(weights, note)``: the tensors to load and what was left out
            (empty when nothing was).
        """
        if self.dec is not None:
            return weights, ''
        dropped = [k for k in weights if k.startswith('dec.')]
        if not dropped:
            return weights, ''
        kept = {k: v for k, v in weights.items() if not k.startswith('dec.')}
        return kept, (f'encoder only: its {len(dropped)} decoder tensors '
                      'left out (enc_mode)')

    def forward_voxels(self, x: SparseTensor) -> SparseTensor:
        """The network on voxels: :class:`~dbbd.models.sparse.SparseTensor`
        ``(V, C)`` (coords: scene, then non-negative grid x, y, z) ->
        ``(V, D)`` on the same voxels."""
        level = serialize(x.feat, x.voxels, self.order,
                          shuffle=self.shuffle_orders and self.training)
        level = self.enc(self.embedding(level))
        if self.dec is not None:
            level = self.dec(level)
        else:
            level = self._upcast(level)
        return x.replace_feat(level.feat)

    @staticmethod
    def _upcast(level):
        """Carry every stage's features back to the finest voxels,
        concatenated finest first."""
        while level.parent is not None:
            parent = level.parent
            level = parent.replace_feat(torch.cat(
                [parent.feat, level.feat.index_select(0, level.cluster)], 1))
        return level

    def forward(self, coord, feat, offset):
        """Per-point features of a batch of scenes.

        Args:
            coord (P, 3): point positions in metres.
            feat (P, C): point features (``C = in_channels``).
            offset (B + 1,): long, scene ``b`` is points
                ``[offset[b], offset[b + 1])``.

        Returns:
            (P, D): each point's voxel's output feature
            (``D = out_channels``).
        """
        if feat.dim() != 2 or feat.shape[-1] != self.in_channels:
            raise ValueError(f'PointTransformerV3 expects {self.in_channels} '
                             f'feature channels, got feat of shape '
                             f'{tuple(feat.shape)}')
        voxels, point_to_voxel = voxelize(coord, feat, offset,
                                          self.voxel_size)
        return self.forward_voxels(voxels).feat.index_select(
            0, point_to_voxel)
