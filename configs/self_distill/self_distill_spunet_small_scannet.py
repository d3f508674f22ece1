# Small mode of self_distill_spunet_scannet.py: the narrower, shallower
# SpUNet on 5 cm voxels of dbbd_spunet_small_scannet.py (so its student
# loads into seg_spunet_small_scannet_ft.py), small heads, small data.
_base_ = ['./self_distill_spunet_scannet.py']

model = dict(
    backbone=dict(
        base_channels=16,
        channels=(16, 32, 64, 64, 32, 32),
        layers=(1, 1, 1, 1, 1, 1),
        voxel_size=0.05),
    head=dict(hidden_channels=256, bottleneck_channels=64,
              num_prototypes=512),
    num_samples=512,
    warmup_teacher_temp_iters=20,
    # a few hundred iterations: a teacher of momentum 0.994 would still be
    # mostly its initialisation at the end
    momentum=0.95,
)

grid_size = 0.05
global_crop = [dict(type='RandomPointCrop', ratio=(0.4, 1.0))]
local_crop = [dict(type='RandomPointCrop', ratio=(0.05, 0.4))]
masking = [dict(type='RandomPatchMask', ratio=0.4, patch_size=0.25)]
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(max_scenes=4, max_depth=2, pipeline=[
        dict(type='GridSample', grid_size=grid_size, mode='train'),
        dict(type='MultiCrop', groups=[
            dict(num_views=2,
                 transforms=global_crop + _base_.train_view + masking),
            dict(num_views=2, transforms=local_crop + _base_.train_view),
        ]),
        dict(type='PackDBBDInputs', feat_keys=_base_.feat_keys),
    ]))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(max_scenes=2, max_depth=2))
