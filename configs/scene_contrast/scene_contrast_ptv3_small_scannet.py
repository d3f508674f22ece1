# Small mode of scene_contrast_ptv3_scannet.py: the small PTv3 on 5 cm
# voxels of dbbd_ptv3_small_scannet.py, small data.
_base_ = ['./scene_contrast_ptv3_scannet.py']

model = dict(
    backbone=_base_.ptv3_small,
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
