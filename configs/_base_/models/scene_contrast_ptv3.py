# SceneContrast (the MSC / PointContrast family) on Point Transformer V3,
# full size: the baseline DBBD on PTv3 is compared with, same backbone
# (dbbd_ptv3.py's) and data, another method. See scene_contrast_spunet.py.
model = dict(
    type='SceneContrast',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    in_channels=3,  # raw point features: normals
    backbone=dict(
        type='PointTransformerV3',
        order=('z', 'z-trans', 'hilbert', 'hilbert-trans'),
        stride=(2, 2, 2, 2),
        enc_depths=(2, 2, 2, 6, 2),
        enc_channels=(32, 64, 128, 256, 512),
        enc_num_head=(2, 4, 8, 16, 32),
        enc_patch_size=(1024, 1024, 1024, 1024, 1024),
        dec_depths=(2, 2, 2, 2),
        dec_channels=(64, 64, 128, 256),
        dec_num_head=(4, 4, 8, 16),
        dec_patch_size=(1024, 1024, 1024, 1024),
        drop_path=0.3,
        voxel_size=0.02,
        backend='torch'),
    head=dict(type='ProjectionHead', out_channels=128),
    num_samples=4096,
    temperature=0.4,
    mask_token=True,
    reconstruct=True,
    recon_weight=1.0,
)
