"""SpUNet: a sparse-convolution UNet over the voxels of whole scenes.

The design of Pointcept's SpUNet-v1m1 (a stem, then per level a strided
convolution down and residual blocks, then per level an inverse convolution
up, a skip concatenation and residual blocks), on :mod:`dbbd.models.sparse`,
so it runs on the pure-PyTorch backend anywhere and on spconv where it is
installed. Its ``state_dict`` names and weight shapes are those of
Pointcept's module, so weights move between the two (see the mapping in
docs/models.md, "Pointcept weights").
"""
from collections import OrderedDict
from typing import Optional, Sequence

import torch
from torch import nn

from dbbd.registry import MODELS

from ..sparse import (SparseConv3d, SparseInverseConv3d, SparseModule,
                      SparseSequential, SubMConv3d, parent_index, set_backend,
                      voxelize)

__all__ = ['SpUNet', 'BasicBlock', 'TooFewVoxelsError', 'READOUTS']

#: How :class:`SpUNet` reads per-point features: the decoder's output, or
#: the encoder's stages carried back to the points.
READOUTS = ('unet', 'upcast')

_BN_ONE_VALUE = 'Expected more than 1 value per channel when training'


class TooFewVoxelsError(ValueError):
    """A training batch has a single voxel at some level of SpUNet, where
    BatchNorm needs more than one. One line; ``scenes`` holds the batch
    positions of the scenes that have one voxel there, and
    :meth:`naming` rewrites the line with their scene ids."""

    def __init__(self, template: str, scenes, spans):
        self.template, self.scenes, self.spans = template, list(scenes), \
            list(spans)
        super().__init__(self.naming())

    def naming(self, scene_ids=None) -> str:
        """The message, the scenes named by ``scene_ids`` (the batch's ids
        in order) when given, else by their position in the batch."""
        named = []
        for b, span in zip(self.scenes, self.spans):
            who = (f'scene {scene_ids[b]}' if scene_ids is not None and
                   b < len(scene_ids) else f'scene {b} of the batch')
            named.append(f'{who} (its points span {span:.3g} m as the '
                         'network sees them)')
        return self.template.format(scenes=', '.join(named))


def _norm(channels, eps, momentum):
    return nn.BatchNorm1d(channels, eps=eps, momentum=momentum)


class BasicBlock(SparseModule):
    """Residual block: ``relu(bn2(conv2(relu(bn1(conv1(x))))) + proj(x))``,
    3x3x3 submanifold convolutions; ``proj`` is the identity when the
    widths match, else a 1x1x1 convolution and BatchNorm.

    Parameters (Pointcept's names): ``conv1``, ``bn1``, ``conv2``, ``bn2``,
    and ``proj.0`` / ``proj.1`` when projecting.
    """

    def __init__(self, in_channels, channels, norm_cfg):
        super().__init__()
        if in_channels == channels:
            self.proj = SparseSequential(nn.Identity())
        else:
            self.proj = SparseSequential(
                SubMConv3d(in_channels, channels, 1, bias=False),
                _norm(channels, **norm_cfg))
        self.conv1 = SubMConv3d(in_channels, channels, 3, bias=False)
        self.bn1 = _norm(channels, **norm_cfg)
        self.relu = nn.ReLU()
        self.conv2 = SubMConv3d(channels, channels, 3, bias=False)
        self.bn2 = _norm(channels, **norm_cfg)

    def forward(self, x):
        out = self.conv1(x)
        out = self.conv2(out.replace_feat(self.relu(self.bn1(out.feat))))
        feat = self.bn2(out.feat) + self.proj(x).feat
        return out.replace_feat(self.relu(feat))


@MODELS.register_module()
class SpUNet(nn.Module):
    """Sparse-convolution UNet scene backbone: points in, per-point features
    out.

    The batch is voxelised inside (:func:`~dbbd.models.sparse.voxelize`: a
    voxel per occupied ``voxel_size`` cell of each scene, features averaged),
    encoded and decoded on the voxels, and each point gets its voxel's
    output feature.

    Levels: ``len(channels) // 2``. Level ``s`` of the encoder is a stride-2
    convolution to ``channels[s]`` then ``layers[s]`` residual blocks; the
    decoder mirrors it, level ``s`` being an inverse convolution to
    ``channels[L - 1 - s]`` (``L = len(channels)``), the concatenation with
    the encoder's features of that resolution and ``layers[L - 1 - s]``
    blocks. Every convolution is followed by BatchNorm (eps 1e-3, momentum
    0.01) and ReLU.

    Args:
        in_channels: C of the point features.
        out_channels: ``None`` (default): the output is the last decoder
            level's ``channels[-1]`` features (after its ReLU, so
            non-negative); an int D adds ``final``, a 1x1x1 convolution with
            bias to D channels (Pointcept's segmentation output).
        base_channels: width of the stem (``conv_input``).
        channels: widths, encoder levels then decoder levels (even length).
        layers: residual blocks per entry of ``channels``.
        voxel_size: voxel edge in metres.
        stem_kernel_size: kernel of the stem's submanifold convolution (5).
        backend: 'torch' (default), 'spconv' or 'auto', for every sparse
            convolution (see :mod:`dbbd.models.sparse.conv`).
        bn_eps, bn_momentum: BatchNorm settings.
        readout: ``'unet'`` (default): the decoder's output, as above.
            ``'upcast'``: encoder only (Sonata's feature up-casting, a
            hypercolumn): each point gets the stem's feature of its voxel
            and every encoder stage's feature of the coarse voxel holding
            it, concatenated, ``D = base_channels + sum(channels[:L / 2])``
            (``out_channels`` must stay None). The decoder takes no part:
            its parameters are frozen (``requires_grad=False``, so
            distributed training waits for no gradient of theirs) and keep
            their initial values; the state dict is the full SpUNet's, so
            the weights load into a ``readout='unet'`` SpUNet of the same
            widths (encoder pre-trained, decoder as initialised).

    Attributes:
        in_channels, out_channels: C and D.
        num_stages: number of levels.
        readout: ``'unet'`` or ``'upcast'``.
    """

    def __init__(self, in_channels: int, out_channels: Optional[int] = None,
                 base_channels: int = 32,
                 channels: Sequence[int] = (32, 64, 128, 256, 256, 128, 96,
                                            96),
                 layers: Sequence[int] = (2, 3, 4, 6, 2, 2, 2, 2),
                 voxel_size: float = 0.02, stem_kernel_size: int = 5,
                 backend: str = 'torch', bn_eps: float = 1e-3,
                 bn_momentum: float = 0.01, readout: str = 'unet'):
        super().__init__()
        channels, layers = tuple(channels), tuple(layers)
        if readout not in READOUTS:
            raise ValueError(f'SpUNet: readout must be one of {READOUTS}, '
                             f'got {readout!r}')
        if readout == 'upcast' and out_channels is not None:
            raise ValueError(
                f'SpUNet: out_channels={out_channels} maps the decoder\'s '
                "output, which readout='upcast' does not compute; leave "
                "out_channels=None (D is then base_channels + the encoder "
                "widths) or use readout='unet'")
        if len(channels) % 2 or not channels or len(layers) != len(channels):
            raise ValueError(
                f'SpUNet needs an even number of channels and one layers '
                f'entry per channel, got channels={channels}, '
                f'layers={layers}')
        if not voxel_size or voxel_size <= 0:
            raise ValueError(f'voxel_size must be > 0, got {voxel_size}')
        self.in_channels = in_channels
        self.channels = channels
        self.layers = layers
        self.voxel_size = float(voxel_size)
        self.num_stages = len(channels) // 2
        norm = dict(eps=bn_eps, momentum=bn_momentum)
        num = len(channels)

        self.conv_input = SparseSequential(
            SubMConv3d(in_channels, base_channels, stem_kernel_size,
                       bias=False),
            _norm(base_channels, **norm), nn.ReLU())
        self.down = nn.ModuleList()
        self.enc = nn.ModuleList()
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        enc_channels, dec_channels = base_channels, channels[-1]
        for s in range(self.num_stages):
            self.down.append(SparseSequential(
                SparseConv3d(enc_channels, channels[s], 2, bias=False),
                _norm(channels[s], **norm), nn.ReLU()))
            self.enc.append(SparseSequential(OrderedDict(
                (f'block{i}', BasicBlock(channels[s], channels[s], norm))
                for i in range(layers[s]))))
            self.up.append(SparseSequential(
                SparseInverseConv3d(channels[num - s - 2], dec_channels, 2,
                                    bias=False),
                _norm(dec_channels, **norm), nn.ReLU()))
            self.dec.append(SparseSequential(OrderedDict(
                (f'block{i}', BasicBlock(
                    dec_channels + enc_channels if i == 0 else dec_channels,
                    dec_channels, norm))
                for i in range(layers[num - s - 1]))))
            enc_channels = channels[s]
            dec_channels = channels[num - s - 2]
        if out_channels is None:
            self.final = nn.Identity()
            self.out_channels = channels[-1]
        else:
            self.final = SubMConv3d(channels[-1], out_channels, 1, bias=True)
            self.out_channels = out_channels
        self.readout = readout
        if readout == 'upcast':
            self.out_channels = base_channels + sum(
                channels[:self.num_stages])
            for part in (self.up, self.dec, self.final):
                part.requires_grad_(False)
        self.apply(self._init_weights)
        self.backend = backend
        set_backend(self, backend)

    @staticmethod
    def _init_weights(m):
        # Pointcept's: truncated normal (std 0.02) for the submanifold
        # convolutions, BatchNorm at identity; the strided and inverse
        # convolutions keep their fan-in uniform initialisation.
        if isinstance(m, SubMConv3d):
            nn.init.trunc_normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm1d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    def forward_voxels(self, x):
        """The UNet on voxels: :class:`~dbbd.models.sparse.SparseTensor`
        ``(V, C)`` -> ``(V, D)`` on the same voxels."""
        x = self.conv_input(x)
        skips = [x]
        for s in range(self.num_stages):
            x = self.enc[s](self.down[s](x))
            skips.append(x)
        x = skips.pop()
        for s in reversed(range(self.num_stages)):
            x = self.up[s](x)
            skip = skips.pop()
            x = self.dec[s](x.replace_feat(
                torch.cat([x.feat, skip.feat], 1)))
        if isinstance(self.final, SparseModule):
            return self.final(x)
        return x.replace_feat(self.final(x.feat))

    def forward_upcast(self, x, point_to_voxel):
        """The encoder on voxels, each stage carried back to the points.

        Args:
            x: :class:`~dbbd.models.sparse.SparseTensor` ``(V, C)`` on the
                finest voxels.
            point_to_voxel (P,): long, each point's row of ``x``.

        Returns:
            (P, D): per point, ``cat(stem, stage 1, ..., stage L / 2)``
            features of the voxels holding it, finest first.
        """
        x = self.conv_input(x)
        row = point_to_voxel
        feats = [x.feat.index_select(0, row)]
        for s in range(self.num_stages):
            coarse = self.enc[s](self.down[s](x))
            row = parent_index(x.voxels, coarse.voxels, 2).index_select(
                0, row)
            feats.append(coarse.feat.index_select(0, row))
            x = coarse
        return torch.cat(feats, 1)

    def forward(self, coord, feat, offset):
        """Per-point features of a batch of scenes.

        Args:
            coord (P, 3): point positions in metres.
            feat (P, C): point features (``C = in_channels``).
            offset (B + 1,): long, scene ``b`` is points
                ``[offset[b], offset[b + 1])``.

        Returns:
            (P, D): each point's voxel's output feature
            (``D = out_channels``); with ``readout='upcast'``, see
            :meth:`forward_upcast`.
        """
        if feat.shape[-1] != self.in_channels:
            raise ValueError(f'SpUNet expects {self.in_channels} feature '
                             f'channels, got {feat.shape[-1]}')
        voxels, point_to_voxel = voxelize(coord, feat, offset,
                                          self.voxel_size)
        try:
            if self.readout == 'upcast':
                return self.forward_upcast(voxels, point_to_voxel)
            out = self.forward_voxels(voxels)
        except ValueError as e:
            if _BN_ONE_VALUE not in str(e):
                raise
            raise self._too_few_voxels(coord, offset, voxels) from None
        return out.feat.index_select(0, point_to_voxel)

    def _too_few_voxels(self, coord, offset, voxels) -> TooFewVoxelsError:
        """Which level of this batch has a single voxel, and whose."""
        grid = voxels.coords.detach().long().cpu()
        level = 0
        for level in range(self.num_stages + 1):
            cells = torch.cat([grid[:, :1], grid[:, 1:] >> level], 1)
            cells = torch.unique(cells, dim=0)
            if len(cells) <= 1:
                break
        per_scene = torch.bincount(cells[:, 0],
                                   minlength=len(offset) - 1).tolist()
        scenes = [b for b, n in enumerate(per_scene) if n == 1]
        bounds = offset.tolist()
        spans = [float((coord[bounds[b]:bounds[b + 1]].max(0).values -
                        coord[bounds[b]:bounds[b + 1]].min(0).values).max())
                 for b in scenes]
        edge = self.voxel_size * 2 ** level
        return TooFewVoxelsError(
            f'SpUNet: {{scenes}} fits in one {edge * 100:g} cm cell at '
            f'level {level} of the network ({self.voxel_size * 100:g} cm '
            f'voxels, stride {2 ** level}), and the training batch has no '
            'other voxel there; BatchNorm needs more than one: a scene in '
            'metres spans metres (coordinates in another unit? '
            'tools/create_data.py warns about such scenes); remove the '
            'scene, or train with batches of several scenes',
            scenes, spans)
