# DBBD on a Point Transformer V3 scene backbone (full size): each view of the
# batch is voxelised (2 cm, PTv3's grid sampling) and encoded once by PTv3
# with the settings of Pointcept's ScanNet PT-v3m1 (four serialization
# orders, patches of 1024 voxels, drop path 0.3); the region tree then reads
# its per-point features as it reads SpUNet's: the regions pool them (max),
# G2L propagates parent context, L2G aggregates children. No per-region
# encoder on top (encoder=None).
_base_ = ['./ptv3.py']

model = dict(
    type='DBBD',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    backbone=dict(
        type='DBBDTreeBackbone',
        in_channels=3,  # raw point features: normals
        hidden_channels=96,  # PTv3 features are projected to this width
        scene_backbone=_base_.ptv3,  # ptv3.py: Pointcept's PT-v3m1
        encoder=None,
        pooling='max',
        propagator=dict(
            type='MLPPropagator', hidden_channels=128, out_channels=96),
        aggregator=dict(
            type='Aggregator', mode='max', spatial_context=True,
            pre_mlp=False),
        with_cp=False,
    ),
    region_head=dict(type='ProjectionHead', out_channels=128),
    point_head=dict(type='ProjectionHead', out_channels=128),
    loss=dict(
        type='DBBDLoss',
        alpha=1.0,
        beta=0.5,
        region_loss=dict(type='RegionLoss', temperature=0.1),
        point_loss=dict(type='PointLoss', num_samples=4096, temperature=0.1)),
)
