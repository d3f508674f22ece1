# DBBD with the PointNet point encoder (method defaults, full size).
# The self-supervisor (DBBD) holds the tree backbone, the two projection
# heads and the loss. Widths left out of a part (its in_channels) are filled
# from the others, so a child config only sets the widths it changes.
model = dict(
    type='DBBD',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    backbone=dict(
        type='DBBDTreeBackbone',
        in_channels=3,  # raw point features: normals
        hidden_channels=96,  # raw features are projected to this width
        encoder=dict(
            type='PointNetEncoder',
            hidden_dims=[64, 128],
            out_channels=96,
            pooling='max'),
        propagator=dict(
            type='MLPPropagator', hidden_channels=128, out_channels=96),
        aggregator=dict(
            type='Aggregator', mode='max', spatial_context=True,
            pre_mlp=False),
        with_cp=False,  # gradient checkpointing (GPU memory)
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
