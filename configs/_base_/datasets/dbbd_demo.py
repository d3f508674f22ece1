# The synthetic demo rooms, listed beside a small-mode config (the demo
# configs: *_small_demo*.py), whose loaders then read them:
#   data_root = _base_.demo_data.demo_root
#   train_dataloader = dict(
#       dataset=dict(data_root=data_root, auto_prepare=_base_.demo_data))
# On first use the rooms are generated and prepared into demo_root (a
# one-off, with a progress bar) through the same tools/create_data.py path
# as real data. Only there: another data_root (e.g. --cfg-options
# data_root=PATH) is your data, used when prepared and never filled with
# synthetic rooms. One definition for every demo config: they share the
# folder, which is prepared once.
demo_data = dict(
    demo_root='data/dbbd_demo',
    num_train=4, num_val=2, num_points=20000, seed=0,
    branching=8, max_depth=4, min_points_to_split=64)
