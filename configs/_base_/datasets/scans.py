# A folder of real scans prepared by tools/create_data.py, for
# pre-training (no labels needed): outdoor tiles of about 25 x 45 m, 25,000
# points each, colour and normals (computed when the files have none).
#   python tools/create_data.py --src PATH/TO/PLY --out data/scans \
#       --layout files --val-ratio 0.25
data_root = 'data/scans'
dataset_type = 'DBBDDataset'
# Colour, normals and intensity (7 channels): on these scans colour
# carries most of the class signal (a linear probe on colour beats one on
# normals); intensity is kept where the files have it (scenes whose
# intensity is constant give a constant channel, harmless); the network
# sees geometry through its convolutions.
feat_keys = ('color', 'normal', 'intensity')

# Two views of a scene, same points and region tree. The scans are
# outdoor tiles with a real "up": rotation about z, flips, scale, and
# colour augmentation (strong: colour is the input the network must learn
# to read, not a shortcut to memorise).
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
    dict(type='MultiView', num_views=2, transforms=train_view),
    dict(type='PackDBBDInputs', feat_keys=feat_keys),
]
val_view = [
    dict(type='CenterShift', apply_z=True),
    dict(type='RandomRotateZ', angle=(-3.141592653589793, 3.141592653589793)),
    dict(type='RandomJitter', sigma=0.005, clip=0.02),
    dict(type='NormalizeColor'),
    dict(type='NormalizeIntensity'),
]
val_pipeline = [
    dict(type='MultiView', num_views=2, transforms=val_view),
    dict(type='PackDBBDInputs', feat_keys=feat_keys),
]

train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
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
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='EpochSeedSampler', shuffle=False),
    collate_fn=dict(type='dbbd.dbbd_collate'),
    dataset=dict(
        type=dataset_type,
        data_root=data_root,
        split='val',
        max_scenes=None,
        max_depth=None,
        pipeline=val_pipeline))

# 15 classes with numbered names (the scans' label ids 0..14)
num_classes = 15
class_names = tuple(f'class{i}' for i in range(num_classes))
val_evaluator = [
    dict(type='ContrastiveLossMetric'),
    dict(type='LinearProbeMetric', num_classes=num_classes,
         class_names=class_names),
]
