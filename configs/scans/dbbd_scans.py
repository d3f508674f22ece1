# DBBD pre-training with the PointNet tree backbone (the method as first
# defined: a per-region PointNet read top-down and bottom-up) on a folder of
# real scans. See dbbd_spunet_scans.py for the data and its preparation.
#   python tools/train.py configs/scans/dbbd_scans.py
# The tree of tools/create_data.py read to depth 3 (regions of ~3,000, ~400
# and ~55 points); small-mode widths (the PointNet reads every point of
# every region, so its cost grows with depth).
_base_ = [
    '../_base_/models/dbbd_pointnet.py',
    '../_base_/datasets/scans.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        in_channels=7,  # colour, normals, intensity (feat_keys)
        hidden_channels=64,
        encoder=dict(hidden_dims=[32, 64], out_channels=64),
        propagator=dict(hidden_channels=64, out_channels=64)),
    region_head=dict(out_channels=64),
    point_head=dict(out_channels=64),
    loss=dict(point_loss=dict(num_samples=2048)),
)

train_dataloader = dict(dataset=dict(max_depth=3))
val_dataloader = dict(dataset=dict(max_depth=3))

optim_wrapper = dict(optimizer=dict(lr=2e-3))
train_cfg = dict(max_epochs=8, val_interval=8)
default_hooks = dict(
    logger=dict(interval=4),
    checkpoint=dict(interval=4, save_best=None))
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='StrictLoadHook'),
    dict(type='CollapseWatchHook', max_batches=4),
]
