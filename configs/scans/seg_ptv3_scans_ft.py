# Semantic segmentation on real scans: the PTv3 of dbbd_ptv3_scans.py
# fine-tuned from its pre-training, with a linear head
# (seg_spunet_scans_ft.py with that backbone; the widths must stay those
# of dbbd_ptv3_scans.py for its weights to load).
#   python tools/train.py configs/scans/seg_ptv3_scans_ft.py \
#       --cfg-options pretrained=work_dirs/dbbd_ptv3_scans/epoch_8.pth
# Siblings: _lin (frozen backbone), _scratch (no pre-training).
_base_ = ['./seg_spunet_scans_ft.py']

pretrained = 'work_dirs/dbbd_ptv3_scans/epoch_8.pth'
model = dict(
    pretrained=pretrained,
    backbone=dict(
        _delete_=True,
        type='PointTransformerV3',
        in_channels=7,
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
        voxel_size=0.2,
        backend='torch'))
