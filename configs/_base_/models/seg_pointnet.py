# Semantic segmentation with the DBBD tree backbone of dbbd_pointnet.py
# (PointSegmentor). The pre-training backbone config as it is (same widths,
# so the weights fit); the head and the loss are the segmentor's own. A
# leaf adds num_classes and class_names from its dataset (a base cannot
# read the dataset base listed beside it) and pretrained=.
_base_ = ['./dbbd_pointnet.py']

model = dict(
    _delete_=True,
    type='PointSegmentor',
    data_preprocessor=dict(type='DBBDDataPreprocessor'),
    backbone={{_base_.model.backbone}},
    head=dict(type='LinearSegHead'),
    class_weight=None,
    ignore_index=-1,
    freeze_backbone=False,
)
