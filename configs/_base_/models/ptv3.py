# Point Transformer V3 settings, one definition for every PTv3 config
# (pre-training, SceneContrast, SelfDistill, segmentation, real scans):
# a config lists this file in its _base_ (or inherits it) and reads
# _base_.ptv3 or _base_.ptv3_small, adding what differs (in_channels,
# voxel_size). The same settings in pre-training and fine-tuning are what
# make the pre-trained weights fit.

# Full size: Pointcept's ScanNet PT-v3m1 (four serialization orders,
# patches of 1024 voxels, drop path 0.3, 2 cm grid).
ptv3 = dict(
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
    backend='torch')  # xCPE convolutions: 'spconv' / 'auto'

# Small mode: four stages of one block, widths 16-64, patches of 128
# voxels, 5 cm grid (the real-scans configs set 0.2 m).
ptv3_small = dict(
    ptv3,
    stride=(2, 2, 2),
    enc_depths=(1, 1, 1, 1),
    enc_channels=(16, 32, 64, 64),
    enc_num_head=(1, 2, 4, 4),
    enc_patch_size=(128, 128, 128, 128),
    dec_depths=(1, 1, 1),
    dec_channels=(32, 32, 64),
    dec_num_head=(2, 2, 4),
    dec_patch_size=(128, 128, 128),
    drop_path=0.1,
    voxel_size=0.05)
