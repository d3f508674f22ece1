# Semantic segmentation on real scans: the PTv3 of dbbd_ptv3_scans.py
# fine-tuned from its pre-training, with a linear head
# (seg_spunet_scans_ft.py with that backbone; the widths must stay those
# of dbbd_ptv3_scans.py for its weights to load).
#   python tools/train.py configs/scans/seg_ptv3_scans_ft.py \
#       --cfg-options pretrained=work_dirs/dbbd_ptv3_scans/epoch_8.pth
# Siblings: _lin (frozen backbone), _scratch (no pre-training).
_base_ = [
    './seg_spunet_scans_ft.py',
    '../_base_/models/ptv3.py',
]

pretrained = 'work_dirs/dbbd_ptv3_scans/epoch_8.pth'
model = dict(
    pretrained=pretrained,
    backbone=dict(_base_.ptv3_small, _delete_=True, in_channels=7,
                  voxel_size=0.2))
