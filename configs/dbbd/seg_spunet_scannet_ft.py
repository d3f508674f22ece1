# Semantic segmentation on ScanNet v2 (ScanNet-20), full size: a SpUNet
# fine-tuned from its pre-training, with a linear head (Pointcept's
# protocol: the scene backbone alone downstream).
#   python tools/train.py configs/dbbd/seg_spunet_scannet_ft.py \
#       --cfg-options pretrained=work_dirs/dbbd_spunet_scannet/epoch_100.pth
# The pre-training may be DBBD on SpUNet (its tree's SpUNet is loaded) or
# SceneContrast (configs/scene_contrast/), same SpUNet config.
# Siblings: _lin (frozen backbone: linear probe), _scratch (no pre-training).
_base_ = [
    '../_base_/models/seg_spunet.py',
    '../_base_/datasets/scannet_seg.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/seg_runtime.py',
]

pretrained = 'work_dirs/dbbd_spunet_scannet/epoch_100.pth'
model = dict(
    num_classes={{_base_.num_classes}},
    class_names={{_base_.class_names}},
    pretrained=pretrained)
