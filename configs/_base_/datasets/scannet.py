# ScanNet v2 prepared by tools/create_data.py (one folder per scene).
data_root = 'data/scannet'
dataset_type = 'DBBDDataset'
# Point features fed to the network: normals (3 channels) by default.
# ('normal', 'color') uses colours too (NormalizeColor is in the views);
# 'intensity' adds 1 channel for scans that have it (NormalizeIntensity is
# in the views: the sensor's 0..1 / 0..255 / 0..65535 scale to -1..1).
# From the command line, `--cfg-options feat_keys="('normal','color')"`
# sets both loaders and the model's input width together.
feat_keys = ('normal', )
# The labels the linear probe of the validation reads (ScanNet-20). For
# another label set, --cfg-options num_classes=15 (the probe then numbers
# the classes class0..class14) and class_names="['ground',...]" to name
# them.
num_classes = 20
class_names = ('wall', 'floor', 'cabinet', 'bed', 'chair', 'sofa', 'table',
               'door', 'window', 'bookshelf', 'picture', 'counter', 'desk',
               'curtain', 'refrigerator', 'shower curtain', 'toilet', 'sink',
               'bathtub', 'otherfurniture')

# Per-view augmentations; MultiView makes two independently augmented views
# of each scene (same points, same region tree), PackDBBDInputs assembles
# the sample.
train_view = [
    dict(type='CenterShift', apply_z=True),
    dict(type='RandomRotateZ', angle=(-3.141592653589793, 3.141592653589793)),
    dict(type='RandomScale', scale=(0.9, 1.1)),
    dict(type='RandomFlip', p=0.5),
    dict(type='RandomJitter', sigma=0.005, clip=0.02),
    dict(type='RandomTranslate', shift=(0.2, 0.2, 0.0)),
    dict(type='ChromaticAutoContrast', p=0.2),
    dict(type='ColorJitter', std=0.05, p=0.95),
    dict(type='NormalizeColor'),
    dict(type='NormalizeIntensity'),
]
train_pipeline = [
    dict(type='MultiView', num_views=2, transforms=train_view),
    dict(type='PackDBBDInputs', feat_keys=feat_keys),
]
# Validation: two views with light augmentation, reproducible (the same
# every validation), so the validation loss is comparable across epochs.
val_view = [
    dict(type='CenterShift', apply_z=True),
    dict(type='RandomRotateZ', angle=(-3.141592653589793, 3.141592653589793)),
    dict(type='RandomJitter', sigma=0.002, clip=0.01),
    dict(type='NormalizeColor'),
    dict(type='NormalizeIntensity'),
]
val_pipeline = [
    dict(type='MultiView', num_views=2, transforms=val_view),
    dict(type='PackDBBDInputs', feat_keys=feat_keys),
]

# The collate function is named with its scope: mmengine's Runner looks
# functions up in the root registry, which finds children only by scope.
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
        max_scenes=None,
        max_depth=None,
        pipeline=train_pipeline))

val_dataloader = dict(
    batch_size=8,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='EpochSeedSampler', shuffle=False),
    collate_fn=dict(type='dbbd.dbbd_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        max_scenes=None,
        max_depth=None,
        pipeline=val_pipeline))

# Validation loss ('loss': save_best, early stopping) and a linear probe of
# the frozen point features on the labels (probe/miou, probe/acc, and the
# raw-feature baseline probe/miou_raw, probe/acc_raw); docs/evaluation.md.
val_evaluator = [
    dict(type='ContrastiveLossMetric'),
    dict(type='LinearProbeMetric', num_classes=num_classes,
         class_names=class_names),
]
