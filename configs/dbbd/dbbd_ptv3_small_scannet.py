# Small mode of dbbd_ptv3_scannet.py: a narrower, shallower PTv3 (4 stages
# of one block, 16 to 64 channels, patches of 128 voxels) on 5 cm voxels
# (trains on a CPU), the small widths and data of dbbd_small_scannet.py.
_base_ = ['./dbbd_ptv3_scannet.py']

model = dict(
    backbone=dict(
        hidden_channels=64,
        scene_backbone=_base_.ptv3_small,
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
