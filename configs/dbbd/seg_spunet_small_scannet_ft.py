# Small mode of seg_spunet_scannet_ft.py: the SpUNet of
# dbbd_spunet_small_scannet.py (so its checkpoints, and those of
# scene_contrast_spunet_small_scannet.py, fit), fewer scenes.
_base_ = ['./seg_spunet_scannet_ft.py']

pretrained = 'work_dirs/dbbd_spunet_small_scannet/epoch_100.pth'
model = dict(
    pretrained=pretrained,
    backbone=dict(
        base_channels=16,
        channels=(16, 32, 64, 64, 32, 32),
        layers=(1, 1, 1, 1, 1, 1),
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
