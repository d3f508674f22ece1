# Semantic segmentation on ScanNet v2 (ScanNet-20), full size: a Point
# Transformer V3 fine-tuned from its pre-training, with a linear head
# (Pointcept's protocol: the scene backbone alone downstream).
#   python tools/train.py configs/dbbd/seg_ptv3_scannet_ft.py \
#       --cfg-options pretrained=work_dirs/dbbd_ptv3_scannet/epoch_100.pth
# The pre-training may be DBBD on PTv3 (its tree's PTv3 is loaded) or
# SceneContrast (configs/scene_contrast/), same PTv3 config. Pointcept's
# released ScanNet PT-v3m1 checkpoint fits too, with its colour + normal
# input (docs/ptv3.md).
# Siblings: _lin (frozen backbone: linear probe), _scratch (no pre-training).
_base_ = [
    '../_base_/models/seg_ptv3.py',
    '../_base_/datasets/scannet_seg.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/seg_runtime.py',
]

pretrained = 'work_dirs/dbbd_ptv3_scannet/epoch_100.pth'
model = dict(
    num_classes={{_base_.num_classes}},
    class_names={{_base_.class_names}},
    pretrained=pretrained)
