# SceneContrast pre-training of a Point Transformer V3 on ScanNet v2, full
# size, with MSC's masking of the training views (mask_rate 0.4, 10 cm
# patches; set ratio=0 for plain point contrast).
_base_ = [
    '../_base_/models/scene_contrast_ptv3.py',
    '../_base_/datasets/scannet_masked.py',
    '../_base_/schedules/adamw_cosine_100e.py',
    '../_base_/default_runtime.py',
]
