# scene_contrast_ptv3_small_scannet.py on the synthetic demo rooms
# (generated and prepared into data/dbbd_demo on first use).
_base_ = ['./scene_contrast_ptv3_small_scannet.py']

data_root = 'data/dbbd_demo'
demo_data = dict(
    demo_root=data_root,
    num_train=4, num_val=2, num_points=20000, seed=0,
    branching=8, max_depth=4, min_points_to_split=64)

train_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=demo_data))
val_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=demo_data))

train_cfg = dict(max_epochs=10, val_interval=1)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=1))
