# SceneContrast (the MSC / PointContrast family) on Point Transformer V3,
# full size: the baseline DBBD on PTv3 is compared with, same backbone
# (dbbd_ptv3.py's) and data, another method. See scene_contrast_spunet.py.
_base_ = ['./ptv3.py']

model = dict(
    type='SceneContrast',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    in_channels=3,  # raw point features: normals
    backbone=_base_.ptv3,  # ptv3.py, the same as dbbd_ptv3.py's
    head=dict(type='ProjectionHead', out_channels=128),
    num_samples=4096,
    temperature=0.4,
    mask_token=True,
    reconstruct=True,
    recon_weight=1.0,
)
