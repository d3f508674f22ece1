# The runtime of the segmentation configs: default_runtime.py with the best
# checkpoint by validation mIoU and no early stopping (runs compared in a
# transfer table get the same budget); no collapse watch and no feature
# pictures (they read a pre-training's embeddings).
_base_ = ['./default_runtime.py']

default_hooks = dict(
    checkpoint=dict(save_best='mIoU', rule='greater'))
custom_hooks = [
    dict(type='NonFiniteLossHook'),
    dict(type='StrictLoadHook'),
    dict(type='PreciseBNHook'),
]
