# SelfDistill pre-training of a SpUNet on ScanNet v2, full size (the
# Sonata recipe on this project's SpUNet; see dbbd/models/selfsup/
# self_distill.py). Views: 2 global crops (40-100% of a scene's points,
# masked for the student: 40% of 10 cm patches) and 4 local crops (5-40%),
# each re-centred and augmented on its own.
#   python tools/train.py configs/self_distill/self_distill_spunet_scannet.py
#   python tools/train.py configs/dbbd/seg_spunet_scannet_ft.py \
#       --cfg-options pretrained=work_dirs/self_distill_spunet_scannet/epoch_100.pth
_base_ = [
    '../_base_/models/self_distill_spunet.py',
    '../_base_/datasets/scannet.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/default_runtime.py',
]

grid_size = 0.02
global_crop = [dict(type='RandomPointCrop', ratio=(0.4, 1.0))]
local_crop = [dict(type='RandomPointCrop', ratio=(0.05, 0.4))]
masking = [dict(type='RandomPatchMask', ratio=0.4, patch_size=0.1)]
train_dataloader = dict(dataset=dict(pipeline=[
    # one point per grid cell first (crops are of these points; the tree
    # is not read)
    dict(type='GridSample', grid_size=grid_size, mode='train'),
    dict(type='MultiCrop', groups=[
        dict(num_views=2,
             transforms=global_crop + _base_.train_view + masking),
        dict(num_views=4, transforms=local_crop + _base_.train_view),
    ]),
    dict(type='PackDBBDInputs', feat_keys=_base_.feat_keys),
]))

# The distillation loss is no measure of progress (its targets move with
# the teacher): no early stopping, no best-by-loss checkpoint; runs go
# their full budget and the last checkpoint is the one to load.
default_hooks = dict(checkpoint=dict(save_best=None, rule=None))
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='StrictLoadHook'),
    dict(type='PreciseBNHook', num_iters=16),
    dict(type='CollapseWatchHook', max_batches=8),
    dict(type='FeatureVisHook'),
]
