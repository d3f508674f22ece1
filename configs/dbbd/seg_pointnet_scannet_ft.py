# Semantic segmentation on ScanNet v2 (ScanNet-20), full size: the DBBD
# tree backbone fine-tuned from a pre-trained encoder, with a linear head.
#   python tools/train.py configs/dbbd/seg_pointnet_scannet_ft.py \
#       --cfg-options pretrained=work_dirs/dbbd_scannet/epoch_100.pth
# Siblings: _lin (frozen backbone: linear probe), _scratch (no pre-training).
_base_ = [
    '../_base_/models/dbbd_pointnet.py',
    '../_base_/datasets/scannet_seg.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/default_runtime.py',
]

# The pre-trained encoder: a checkpoint of configs/dbbd/dbbd_scannet.py
# (its last epoch by default) or a file of tools/export_encoder.py. Only the
# backbone's tensors are loaded, all of them or none (a mismatch stops).
pretrained = 'work_dirs/dbbd_scannet/epoch_100.pth'

# The pre-training backbone config as it is (same widths, so the weights
# fit); the head and the loss are the segmentor's own.
model = dict(
    _delete_=True,
    type='PointSegmentor',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    backbone={{_base_.model.backbone}},
    head=dict(type='LinearSegHead'),
    num_classes={{_base_.num_classes}},
    class_names={{_base_.class_names}},
    class_weight=None,
    ignore_index=-1,
    freeze_backbone=False,
    pretrained=pretrained,
)

# The best checkpoint by validation mIoU; no early stopping (runs compared
# in a transfer table get the same budget).
default_hooks = dict(
    checkpoint=dict(save_best='mIoU', rule='greater'))
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='StrictLoadHook'),
    dict(type='PreciseBNHook'),
]
