# Semantic segmentation on real scans with the DBBD tree backbone of
# dbbd_scans.py, fine-tuned from its pre-training, with a linear head.
#   python tools/train.py configs/scans/seg_pointnet_scans_ft.py \
#       --cfg-options pretrained=work_dirs/dbbd_scans/epoch_8.pth
# Siblings: _lin (frozen backbone), _scratch (no pre-training).
_base_ = [
    '../_base_/models/dbbd_pointnet.py',
    '../_base_/datasets/scans_seg.py',
    '../_base_/schedules/adamw_warmup_cosine_100e.py',
    '../_base_/default_runtime.py',
]

pretrained = 'work_dirs/dbbd_scans/epoch_8.pth'
model = dict(
    _delete_=True,
    type='PointSegmentor',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    backbone=dict(
        _base_.model.backbone,
        in_channels=7,
        hidden_channels=64,
        encoder=dict(_base_.model.backbone.encoder, hidden_dims=[32, 64],
                     out_channels=64),
        propagator=dict(_base_.model.backbone.propagator,
                        hidden_channels=64, out_channels=64)),
    head=dict(type='LinearSegHead'),
    num_classes={{_base_.num_classes}},
    class_names={{_base_.class_names}},
    # see seg_spunet_scans_ft.py
    class_weight='auto',
    losses=[
        dict(type='SegCrossEntropyLoss', loss_weight=1.0),
        dict(type='LovaszSoftmaxLoss', loss_weight=1.0),
    ],
    ignore_index=-1,
    freeze_backbone=False,
    pretrained=pretrained,
)

train_dataloader = dict(dataset=dict(max_depth=3))
val_dataloader = dict(dataset=dict(max_depth=3))
test_dataloader = val_dataloader

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
]
