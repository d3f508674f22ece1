# self_distill_spunet_small_demo.py (the demo rooms, 10 epochs) with the
# small PTv3 of self_distill_ptv3_small_scannet.py; its student loads into
# seg_ptv3_small_demo_ft.py:
#   python tools/train.py configs/self_distill/self_distill_ptv3_small_demo.py
#   python tools/train.py configs/dbbd/seg_ptv3_small_demo_ft.py \
#       --cfg-options pretrained=work_dirs/self_distill_ptv3_small_demo/epoch_10.pth
_base_ = ['./self_distill_spunet_small_demo.py']

model = dict(backbone=dict(
    _delete_=True,
    type='PointTransformerV3',
    order=('z', 'z-trans', 'hilbert', 'hilbert-trans'),
    stride=(2, 2, 2),
    enc_depths=(1, 1, 1, 1),
    enc_channels=(16, 32, 64, 64),
    enc_num_head=(1, 2, 4, 4),
    enc_patch_size=(128, 128, 128, 128),
    dec_depths=(1, 1, 1),
    dec_channels=(32, 32, 64),
    dec_num_head=(2, 2, 4),
    dec_patch_size=(128, 128, 128),
    drop_path=0.1,
    voxel_size=0.05,
    backend='torch'))
