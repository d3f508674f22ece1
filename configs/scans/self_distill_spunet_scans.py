# SelfDistill (Sonata-style point self-distillation) pre-training of the
# scans family's SpUNet on real scans: the strongest known baseline on the
# same backbone, data and budget as DBBD and SceneContrast there. Outdoor
# tiles of about 25 x 45 m, 25,000 points each, prepared with
#   python tools/create_data.py --src ../shared/data/real_scans \
#       --out data/scans --layout files --val-ratio 0.25
# then
#   python tools/train.py configs/scans/self_distill_spunet_scans.py
# Self-contained: its own dataset pipeline (global and local crops).
# The student's SpUNet (read encoder-only here, readout='upcast') has the
# family's widths, so its weights load into a segmentation config with
# that SpUNet through pretrained=work_dirs/self_distill_spunet_scans/
# epoch_8.pth. Colour, normals and intensity: 7 channels, as the family.
_base_ = [
    '../_base_/models/self_distill_spunet.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/default_runtime.py',
]

data_root = 'data/scans'
# colour carries most of the class signal on these scans, and it is the
# input the recipe wants the network to rely on; intensity where the files
# have it
feat_keys = ('color', 'normal', 'intensity')
num_classes = 15
class_names = tuple(f'class{i}' for i in range(num_classes))

model = dict(
    in_channels=7,
    backbone=dict(
        type='SpUNet',
        base_channels=16,
        channels=(16, 32, 64, 64, 32, 32),
        layers=(1, 1, 1, 1, 1, 1),
        voxel_size=0.2,
        bn_momentum=0.1,
        backend='torch',
        readout='upcast'),
    head=dict(hidden_channels=128, bottleneck_channels=64,
              num_prototypes=256),
    num_samples=512,
    # 8 epochs of 12 iterations: the teacher follows within ~10 updates
    # at first, and freezes toward the end (cosine to 1)
    momentum=0.9,
    warmup_teacher_temp_iters=12,
)

# Per-view augmentation after the crop: re-centred (a crop's coordinates
# do not say where in the tile it lies), turned about z, scaled, flipped;
# strong colour augmentation.
view = [
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
    # no GridSample: ~1 point per 0.2 m voxel already (25,000 points on
    # ~1,000 m2)
    dict(type='MultiCrop', groups=[
        # 2 global crops (40-100% of the points), 40% of the 1 m patches
        # masked for the student (MSC's 10 cm at 2 cm voxels, scaled)
        dict(num_views=2, transforms=[
            dict(type='RandomPointCrop', ratio=(0.4, 1.0)), *view,
            dict(type='RandomPatchMask', ratio=0.4, patch_size=1.0)]),
        # 2 local crops (5-40%), the student's only
        dict(num_views=2, transforms=[
            dict(type='RandomPointCrop', ratio=(0.05, 0.4)), *view]),
    ]),
    dict(type='PackDBBDInputs', feat_keys=feat_keys),
]
val_view = [
    dict(type='CenterShift', apply_z=True),
    dict(type='RandomRotateZ', angle=(-3.141592653589793, 3.141592653589793)),
    dict(type='NormalizeColor'),
    dict(type='NormalizeIntensity'),
]
# two whole views: a reproducible validation loss and the probe's features
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
        type='DBBDDataset',
        data_root=data_root,
        split='train',
        max_scenes=None,
        max_depth=0,  # the region tree is not read: one level is enough
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    sampler=dict(type='EpochSeedSampler', shuffle=False),
    collate_fn=dict(type='dbbd.dbbd_collate'),
    dataset=dict(
        type='DBBDDataset',
        data_root=data_root,
        split='val',
        max_scenes=None,
        max_depth=0,
        pipeline=val_pipeline))
val_evaluator = [
    dict(type='ContrastiveLossMetric'),
    dict(type='LinearProbeMetric', num_classes=num_classes,
         class_names=class_names),
]

optim_wrapper = dict(optimizer=dict(lr=2e-3))
train_cfg = dict(max_epochs=8, val_interval=4)
# The distillation loss is no measure of progress (its targets move with
# the teacher): no early stopping, no best-by-loss checkpoint; the last
# checkpoint is the one to load. BatchNorm momentum 0.1 keeps the running
# statistics current without PreciseBNHook's extra passes.
default_hooks = dict(
    logger=dict(interval=4),
    checkpoint=dict(interval=4, save_best=None, rule=None))
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='StrictLoadHook'),
    dict(type='CollapseWatchHook', max_batches=4),
]
