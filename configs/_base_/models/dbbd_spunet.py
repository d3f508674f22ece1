# DBBD on a SpUNet scene backbone (full size): each view of the batch is
# voxelised (2 cm) and encoded once by SpUNet (Pointcept's SpUNet-v1m1
# design); the region tree then reads its per-point features: the regions
# pool them (max), G2L propagates parent context as with PointNet, L2G
# aggregates children. No per-region encoder on top (encoder=None; give one
# to add it).
model = dict(
    type='DBBD',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    backbone=dict(
        type='DBBDTreeBackbone',
        in_channels=3,  # raw point features: normals
        hidden_channels=96,  # SpUNet features are projected to this width
        scene_backbone=dict(
            type='SpUNet',
            base_channels=32,
            channels=(32, 64, 128, 256, 256, 128, 96, 96),
            layers=(2, 3, 4, 6, 2, 2, 2, 2),
            voxel_size=0.02,
            backend='torch'),  # 'spconv' / 'auto' with spconv installed
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
