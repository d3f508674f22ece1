# Semantic segmentation on a folder of real scans prepared by
# tools/create_data.py (labels 0..14, -1 unlabelled); see scans.py.
data_root = 'data/scans'
dataset_type = 'SegDataset'
num_classes = 15
class_names = tuple(f'class{i}' for i in range(num_classes))
feat_keys = ('color', 'normal', 'intensity')

train_view = [
    dict(type='CenterShift', apply_z=True),
    dict(type='RandomRotateZ', angle=(-3.141592653589793, 3.141592653589793)),
    dict(type='RandomScale', scale=(0.9, 1.1)),
    dict(type='RandomFlip', p=0.5),
    dict(type='RandomJitter', sigma=0.01, clip=0.05),
    dict(type='ChromaticAutoContrast', p=0.2),
    dict(type='ColorJitter', std=0.05, p=0.95),
    dict(type='NormalizeColor'),
    dict(type='NormalizeIntensity'),
]
train_pipeline = [
    dict(type='MultiView', num_views=1, transforms=train_view),
    dict(type='PackDBBDInputs', feat_keys=feat_keys),
]
val_view = [
    dict(type='CenterShift', apply_z=True),
    dict(type='NormalizeColor'),
    dict(type='NormalizeIntensity'),
]
val_pipeline = [
    dict(type='MultiView', num_views=1, transforms=val_view),
    dict(type='PackDBBDInputs', feat_keys=feat_keys),
]
tta_pipeline = [
    dict(type='MultiView', num_views=4,
         transforms=val_view + [
             dict(type='ViewRotateZ', angles=(0, 90, 180, 270))]),
    dict(type='PackDBBDInputs', feat_keys=feat_keys),
]

# Label-efficient training, deterministic by label_seed:
# labelled_scenes=16 (tools/transfer.py --labelled-scenes 16), etc.
train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='EpochSeedSampler', shuffle=True),
    collate_fn=dict(type='dbbd.dbbd_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='train',
        num_classes=num_classes,
        max_scenes=None,
        max_depth=None,
        labelled_fraction=None,
        labelled_scenes=None,
        labelled_points=None,
        label_seed=0,
        pipeline=train_pipeline))

val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='EpochSeedSampler', shuffle=False),
    collate_fn=dict(type='dbbd.dbbd_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        num_classes=num_classes,
        max_scenes=None,
        max_depth=None,
        pipeline=val_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(
    type='SegMetric', num_classes=num_classes, class_names=class_names)
test_evaluator = val_evaluator
test_cfg = dict(type='TestLoop')
