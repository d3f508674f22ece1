# Semantic segmentation on real scans: the SpUNet of
# dbbd_spunet_scans.py (or scene_contrast_spunet_scans.py) fine-tuned from
# its pre-training, with a linear head.
#   python tools/train.py configs/scans/seg_spunet_scans_ft.py \
#       --cfg-options pretrained=work_dirs/dbbd_spunet_scans/epoch_8.pth
# Siblings: _lin (frozen backbone), _scratch (no pre-training).
_base_ = [
    '../_base_/models/dbbd_spunet.py',
    '../_base_/datasets/scans_seg.py',
    '../_base_/schedules/adamw_warmup_cosine_100e.py',
    '../_base_/default_runtime.py',
]

pretrained = 'work_dirs/dbbd_spunet_scans/epoch_8.pth'
model = dict(
    _delete_=True,
    type='PointSegmentor',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    backbone=dict(
        type='SpUNet',
        in_channels=7,
        base_channels=16,
        channels=(16, 32, 64, 64, 32, 32),
        layers=(1, 1, 1, 1, 1, 1),
        voxel_size=0.2,
        bn_momentum=0.1,
        backend='torch'),
    head=dict(type='LinearSegHead'),
    num_classes={{_base_.num_classes}},
    class_names={{_base_.class_names}},
    # one class holds ~80% of the points: class-balanced cross-entropy
    # (weights from the labelled training points, computed when training
    # starts and logged) plus a Lovasz-softmax term (Pointcept's recipe)
    class_weight='auto',
    losses=[
        dict(type='SegCrossEntropyLoss', loss_weight=1.0),
        dict(type='LovaszSoftmaxLoss', loss_weight=1.0),
    ],
    ignore_index=-1,
    freeze_backbone=False,
    pretrained=pretrained,
)

# 40 epochs: a linear warm-up over the first 2 (the schedule's _base_: a
# fresh head's first steps do not rewrite pre-trained weights), then the
# cosine; fine-tune and scratch alike
optim_wrapper = dict(optimizer=dict(lr=5e-3))
train_cfg = dict(max_epochs=40, val_interval=10)
default_hooks = dict(
    logger=dict(interval=8),
    checkpoint=dict(interval=10, save_best='mIoU', rule='greater'))
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='StrictLoadHook'),
    dict(type='PreciseBNHook', num_iters=8, interval=10),
]
