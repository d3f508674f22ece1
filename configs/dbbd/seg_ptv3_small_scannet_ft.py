# Small mode of seg_ptv3_scannet_ft.py: the PTv3 of dbbd_ptv3_small_scannet.py
# (so its checkpoints, and those of scene_contrast_ptv3_small_scannet.py,
# fit), fewer scenes.
_base_ = ['./seg_ptv3_scannet_ft.py']

pretrained = 'work_dirs/dbbd_ptv3_small_scannet/epoch_100.pth'
model = dict(
    pretrained=pretrained,
    backbone=dict(
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
test_dataloader = val_dataloader
