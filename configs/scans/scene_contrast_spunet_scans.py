# SceneContrast (the MSC / PointContrast family) pre-training of the SpUNet
# of dbbd_spunet_scans.py on real scans: the baseline DBBD is compared with,
# same backbone, data and budget. Masking of 40% of 0.4 m patches (the
# indoor 10 cm patches scaled to the 0.2 m voxels).
_base_ = [
    '../_base_/models/scene_contrast_spunet.py',
    '../_base_/datasets/scans.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/default_runtime.py',
]

model = dict(
    in_channels=7,
    backbone=dict(
        base_channels=16,
        channels=(16, 32, 64, 64, 32, 32),
        layers=(1, 1, 1, 1, 1, 1),
        voxel_size=0.2,
        bn_momentum=0.1),
    head=dict(out_channels=64),
    num_samples=2048,
)

masking = [dict(type='RandomPatchMask', ratio=0.4, patch_size=0.4)]
train_dataloader = dict(dataset=dict(max_depth=3, pipeline=[
    dict(type='MultiView', num_views=2,
         transforms=_base_.train_view + masking),
    dict(type='PackDBBDInputs', feat_keys=_base_.feat_keys),
]))
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
