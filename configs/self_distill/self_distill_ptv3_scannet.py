# SelfDistill pre-training of a Point Transformer V3 on ScanNet v2, full
# size: self_distill_spunet_scannet.py (views, heads, teacher, schedule)
# with the PTv3 of dbbd_ptv3_scannet.py (Pointcept's ScanNet PT-v3m1
# settings) in place of the SpUNet. Read through its decoder
# (enc_mode=False), so the student's state dict is the full PTv3 and
# loads into seg_ptv3_scannet_ft.py:
#   python tools/train.py configs/self_distill/self_distill_ptv3_scannet.py
#   python tools/train.py configs/dbbd/seg_ptv3_scannet_ft.py \
#       --cfg-options pretrained=work_dirs/self_distill_ptv3_scannet/epoch_100.pth
_base_ = ['./self_distill_spunet_scannet.py']

model = dict(backbone=dict(
    _delete_=True,
    type='PointTransformerV3',
    order=('z', 'z-trans', 'hilbert', 'hilbert-trans'),
    stride=(2, 2, 2, 2),
    enc_depths=(2, 2, 2, 6, 2),
    enc_channels=(32, 64, 128, 256, 512),
    enc_num_head=(2, 4, 8, 16, 32),
    enc_patch_size=(1024, 1024, 1024, 1024, 1024),
    dec_depths=(2, 2, 2, 2),
    dec_channels=(64, 64, 128, 256),
    dec_num_head=(4, 4, 8, 16),
    dec_patch_size=(1024, 1024, 1024, 1024),
    drop_path=0.3,
    voxel_size=0.02,
    backend='torch'))
