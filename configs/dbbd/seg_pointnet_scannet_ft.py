# Semantic segmentation on ScanNet v2 (ScanNet-20), full size: the DBBD
# tree backbone fine-tuned from a pre-trained encoder, with a linear head.
#   python tools/train.py configs/dbbd/seg_pointnet_scannet_ft.py \
#       --cfg-options pretrained=work_dirs/dbbd_scannet/epoch_100.pth
# Siblings: _lin (frozen backbone: linear probe), _scratch (no pre-training).
_base_ = [
    '../_base_/models/seg_pointnet.py',
    '../_base_/datasets/scannet_seg.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/seg_runtime.py',
]

# The pre-trained encoder: a checkpoint of configs/dbbd/dbbd_scannet.py
# (its last epoch by default) or a file of tools/export_encoder.py. Only the
# backbone's tensors are loaded, all of them or none (a mismatch stops).
pretrained = 'work_dirs/dbbd_scannet/epoch_100.pth'
model = dict(
    num_classes={{_base_.num_classes}},
    class_names={{_base_.class_names}},
    pretrained=pretrained)
