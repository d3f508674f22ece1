# Small mode of scene_contrast_spunet_scannet.py: the narrower, shallower
# SpUNet on 5 cm voxels of dbbd_spunet_small_scannet.py, small data.
_base_ = ['./scene_contrast_spunet_scannet.py']

model = dict(
    backbone=dict(
        base_channels=16,
        channels=(16, 32, 64, 64, 32, 32),
        layers=(1, 1, 1, 1, 1, 1),
        voxel_size=0.05),
    head=dict(out_channels=64),
    num_samples=512,
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
