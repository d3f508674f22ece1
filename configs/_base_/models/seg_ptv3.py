# Semantic segmentation with the Point Transformer V3 of dbbd_ptv3.py alone
# (Pointcept's protocol: the scene backbone alone downstream) and a linear
# head (PointSegmentor). A leaf adds num_classes and class_names from its
# dataset (a base cannot read the dataset base listed beside it) and
# pretrained=.
_base_ = ['./dbbd_ptv3.py']

model = dict(
    _delete_=True,
    type='PointSegmentor',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    # the pre-training's PTv3 as it is (same widths, so the weights fit)
    backbone=dict(_base_.model.backbone.scene_backbone, in_channels=3),
    head=dict(type='LinearSegHead'),
    class_weight=None,
    ignore_index=-1,
    freeze_backbone=False,
)
