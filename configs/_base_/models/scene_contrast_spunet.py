# SceneContrast (the MSC / PointContrast family) on SpUNet, full size: the
# baseline DBBD is compared with, same backbone and data, another method.
# Two views share their points; 40% of the 10 cm patches of each training
# view are masked (datasets/scannet_masked.py, or a leaf's pipeline), a
# seeded subsample of matched points is contrasted (InfoNCE, t = 0.4) and
# the masked points' input features are reconstructed.
model = dict(
    type='SceneContrast',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    in_channels=3,  # raw point features: normals
    backbone=dict(
        type='SpUNet',
        base_channels=32,
        channels=(32, 64, 128, 256, 256, 128, 96, 96),
        layers=(2, 3, 4, 6, 2, 2, 2, 2),
        voxel_size=0.02,
        backend='torch'),
    head=dict(type='ProjectionHead', out_channels=128),
    num_samples=4096,
    temperature=0.4,
    mask_token=True,
    reconstruct=True,
    recon_weight=1.0,
)
