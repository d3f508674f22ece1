# DBBD pre-training of a SpUNet on a folder of real scans (outdoor tiles,
# ~25 x 45 m, 25,000 points, ~25 points per square metre).
#   python tools/create_data.py --src PATH/TO/PLY --out data/scans \
#       --layout files --val-ratio 0.25
#   python tools/train.py configs/scans/dbbd_spunet_scans.py
# Sizes chosen from the data (not from indoor ScanNet):
# - voxel 0.2 m: the median spacing between a point and its nearest
#   neighbour is ~0.12 m, so at 5 cm almost every point sits alone in its
#   voxel and a 3x3x3 convolution sees no neighbour; 0.2 m puts ~1-2
#   points in an occupied voxel and a kernel spans 0.6 m. Four stride-2
#   levels reach 3.2 m voxels, a receptive field of tens of metres: the
#   whole tile.
# - widths 16..64 with one block a level: ~0.5 s per scene-view step on a
#   2-core CPU (the budget: an epoch of the 48 development scans in about a
#   minute).
# - the tree of tools/create_data.py (branching 8, depth 4, regions of >= 64
#   points split), read to depth 3: regions of ~3,000, ~400 and ~55 points
#   (tens of metres down to a few metres), the scales of the classes' objects.
# - BatchNorm momentum 0.1: short runs; with Pointcept's 0.01 the running
#   statistics would still be mostly their start after a few hundred steps.
_base_ = [
    '../_base_/models/dbbd_spunet.py',
    '../_base_/datasets/scans.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    backbone=dict(
        in_channels=7,  # colour, normals, intensity (feat_keys)
        hidden_channels=64,
        scene_backbone=dict(
            base_channels=16,
            channels=(16, 32, 64, 64, 32, 32),
            layers=(1, 1, 1, 1, 1, 1),
            voxel_size=0.2,
            bn_momentum=0.1),
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
    dict(type='PreciseBNHook', num_iters=8, interval=8),
    dict(type='CollapseWatchHook', max_batches=4),
]
