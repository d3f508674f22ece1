# SelfDistill pre-training of a Point Transformer V3 on ScanNet v2, full
# size: self_distill_spunet_scannet.py (views, heads, teacher, schedule)
# with the PTv3 of dbbd_ptv3_scannet.py (Pointcept's ScanNet PT-v3m1
# settings) in place of the SpUNet. Read through its decoder
# (enc_mode=False), so the student's state dict is the full PTv3 and
# loads into seg_ptv3_scannet_ft.py:
#   python tools/train.py configs/self_distill/self_distill_ptv3_scannet.py
#   python tools/train.py configs/dbbd/seg_ptv3_scannet_ft.py \
#       --cfg-options pretrained=work_dirs/self_distill_ptv3_scannet/epoch_100.pth
_base_ = [
    './self_distill_spunet_scannet.py',
    '../_base_/models/ptv3.py',
]

model = dict(backbone=dict(_base_.ptv3, _delete_=True))
