# Small mode of seg_ptv3_scannet_ft.py: the PTv3 of dbbd_ptv3_small_scannet.py
# (so its checkpoints, and those of scene_contrast_ptv3_small_scannet.py,
# fit), fewer scenes.
_base_ = ['./seg_ptv3_scannet_ft.py']

pretrained = 'work_dirs/dbbd_ptv3_small_scannet/epoch_100.pth'
model = dict(
    pretrained=pretrained,
    backbone=_base_.ptv3_small,
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
