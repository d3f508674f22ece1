# The demo: small mode on synthetic rooms, no download needed. On first use
# the rooms are generated and prepared into data/dbbd_demo (a one-off, with a
# progress bar) through the same tools/create_data.py path as real data.
# Only there: another data_root (e.g. --cfg-options data_root=PATH) is your
# data, used when prepared and never filled with synthetic rooms.
_base_ = ['./dbbd_small_scannet.py']

data_root = 'data/dbbd_demo'
demo_data = dict(
    demo_root=data_root,
    num_train=4, num_val=2, num_points=20000, seed=0,
    branching=8, max_depth=4, min_points_to_split=64)

train_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=demo_data))
val_dataloader = dict(
    dataset=dict(data_root=data_root, auto_prepare=demo_data))

# 10 epochs, validation and a checkpoint every epoch (the cosine schedule
# follows max_epochs).
train_cfg = dict(max_epochs=10, val_interval=1)
default_hooks = dict(
    logger=dict(interval=1), checkpoint=dict(interval=1))
