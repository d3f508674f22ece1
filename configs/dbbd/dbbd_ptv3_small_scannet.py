# Small mode of dbbd_ptv3_scannet.py: a narrower, shallower PTv3 (4 stages
# of one block, 16 to 64 channels, patches of 128 voxels) on 5 cm voxels
# (trains on a CPU), the small widths and data of dbbd_small_scannet.py.
_base_ = ['./dbbd_ptv3_scannet.py']

model = dict(
    backbone=dict(
        hidden_channels=64,
        scene_backbone=dict(
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
            voxel_size=0.05),
        propagator=dict(hidden_channels=64, out_channels=64)),
    region_head=dict(out_channels=64),
    point_head=dict(out_channels=64),
    loss=dict(point_loss=dict(num_samples=512)),
)

train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(max_scenes=4, max_depth=2))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(max_scenes=2, max_depth=2))
