# DBBD pre-training of a small Point Transformer V3 on a folder of real
# scans: dbbd_spunet_scans.py (data, tree depth, schedule, heads) with the
# PTv3 of dbbd_ptv3_small_scannet.py in place of the SpUNet.
#   python tools/train.py configs/scans/dbbd_ptv3_scans.py
# Grid 0.2 m, as the SpUNet: at 5 cm almost every point of these scans is
# alone in its voxel. Patches of 128 voxels: a 0.2 m grid of a 25 x 45 m
# tile holds ~15,000 occupied voxels, so attention runs over ~120 patches
# a scene at the first stage. Four stages of one block, 16 to 64 channels:
# the SpUNet's widths, so the two backbones are compared at the same size.
_base_ = ['./dbbd_spunet_scans.py']

model = dict(
    backbone=dict(
        scene_backbone=dict(
            _delete_=True,
            type='PointTransformerV3',
            order=('z', 'z-trans', 'hilbert', 'hilbert-trans'),
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
            voxel_size=0.2,
            backend='torch')))
