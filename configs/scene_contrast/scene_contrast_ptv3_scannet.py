# SceneContrast pre-training of a Point Transformer V3 on ScanNet v2, full
# size, with MSC's masking of the training views (mask_rate 0.4, 10 cm
# patches; set ratio=0 for plain point contrast).
_base_ = [
    '../_base_/models/scene_contrast_ptv3.py',
    '../_base_/datasets/scannet.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/default_runtime.py',
]

masking = [dict(type='RandomPatchMask', ratio=0.4, patch_size=0.1)]
train_dataloader = dict(dataset=dict(pipeline=[
    dict(type='MultiView', num_views=2,
         transforms=_base_.train_view + masking),
    dict(type='PackDBBDInputs', feat_keys=_base_.feat_keys),
]))
