# DBBD pre-training of a small Point Transformer V3 on a folder of real
# scans: dbbd_spunet_scans.py (data, tree depth, schedule, heads) with the
# PTv3 of dbbd_ptv3_small_scannet.py in place of the SpUNet.
#   python tools/train.py configs/scans/dbbd_ptv3_scans.py
# Grid 0.2 m, as the SpUNet: at 5 cm almost every point of these scans is
# alone in its voxel. Patches of 128 voxels: a 0.2 m grid of a 25 x 45 m
# tile holds ~15,000 occupied voxels, so attention runs over ~120 patches
# a scene at the first stage. Four stages of one block, 16 to 64 channels:
# the SpUNet's widths, so the two backbones are compared at the same size.
_base_ = [
    './dbbd_spunet_scans.py',
    '../_base_/models/ptv3.py',
]

model = dict(
    backbone=dict(
        scene_backbone=dict(_base_.ptv3_small, _delete_=True,
                            voxel_size=0.2)))
