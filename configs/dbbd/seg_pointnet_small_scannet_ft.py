# Small mode of seg_pointnet_scannet_ft.py: the widths of
# dbbd_small_scannet.py (so its checkpoints fit), fewer scenes, depth 2.
_base_ = ['./seg_pointnet_scannet_ft.py']

pretrained = 'work_dirs/dbbd_small_scannet/epoch_100.pth'
model = dict(
    pretrained=pretrained,
    backbone=dict(
        hidden_channels=64,
        encoder=dict(hidden_dims=[32, 64], out_channels=64),
        propagator=dict(hidden_channels=64, out_channels=64)),
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
