# ScanNet v2 semantic segmentation (ScanNet-20), prepared by
# tools/create_data.py: one view per scene, every point labelled -1..19.
data_root = 'data/scannet'
dataset_type = 'SegDataset'
# num_classes and class_names set the model and the metric together (also
# from the command line: --cfg-options num_classes=13).
num_classes = 20
class_names = ('wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table',
               'door', 'window', 'bookshelf', 'picture', 'counter', 'desk',
               'curtain', 'refrigerator', 'shower curtain', 'toilet', 'sink',
               'bathtub', 'otherfurniture')
feat_keys = ('normal', )

# Training views: rotation, scale, flip, jitter (and colour augmentation
# when feat_keys has 'color'; NormalizeIntensity scales intensity to -1..1
# when feat_keys has 'intensity'). The tree backbone reads every point, so no
# grid sampling here; a scene backbone may put
# dict(type='GridSample', grid_size=0.02, mode='train') first in the
# pipeline (before MultiView), and mode='test' in the others.
train_view = [
    dict(type='CenterShift', apply_z=True),
    dict(type='RandomRotateZ', angle=(-3.141592653589793, 3.141592653589793)),
    dict(type='RandomScale', scale=(0.9, 1.1)),
    dict(type='RandomFlip', p=0.5),
    dict(type='RandomJitter', sigma=0.005, clip=0.02),
    dict(type='ChromaticAutoContrast', p=0.2),
    dict(type='ColorJitter', std=0.05, p=0.95),
    dict(type='NormalizeColor'),
    dict(type='NormalizeIntensity'),
]
train_pipeline = [
    dict(type='MultiView', num_views=1, transforms=train_view),
    dict(type='PackDBBDInputs', feat_keys=feat_keys),
]
# Validation and test: deterministic, every point.
val_view = [
    dict(type='CenterShift', apply_z=True),
    dict(type='NormalizeColor'),
    dict(type='NormalizeIntensity'),
]
val_pipeline = [
    dict(type='MultiView', num_views=1, transforms=val_view),
    dict(type='PackDBBDInputs', feat_keys=feat_keys),
]
# Test-time augmentation (tools/test.py --tta): four views rotated by 0, 90,
# 180 and 270 degrees about z; the segmentor averages their logits.
tta_pipeline = [
    dict(type='MultiView', num_views=4,
         transforms=val_view + [
             dict(type='ViewRotateZ', angles=(0, 90, 180, 270))]),
    dict(type='PackDBBDInputs', feat_keys=feat_keys),
]

# Label-efficient training (ScanNet's data-efficient benchmark), set on the
# training dataset, deterministic by label_seed:
#   labelled_fraction=0.1 (or labelled_scenes=120): train on those scenes;
#   labelled_points=20: keep 20 labelled points per scene, the rest -1.
train_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
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
    num_workers=4,
    persistent_workers=True,
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
# ScanNet's test split has no public labels: tools/test.py scores val.
test_dataloader = val_dataloader

# One confusion matrix over the split: mIoU, mAcc, allAcc and a per-class
# IoU table in the log.
val_evaluator = dict(
    type='SegMetric', num_classes=num_classes, class_names=class_names)
test_evaluator = val_evaluator
test_cfg = dict(type='TestLoop')
