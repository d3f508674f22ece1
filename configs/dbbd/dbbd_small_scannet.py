# Small mode: the full config with a smaller network and fewer scenes, for a
# laptop or a CPU. Values set on top of this (--cfg-options or a child
# config) stay as set.
_base_ = ['./dbbd_scannet.py']

model = dict(
    backbone=dict(
        hidden_channels=64,
        encoder=dict(hidden_dims=[32, 64], out_channels=64),
        propagator=dict(hidden_channels=64, out_channels=64)),
    region_head=dict(out_channels=64),
    point_head=dict(out_channels=64),
    loss=dict(point_loss=dict(num_samples=512)),
)

train_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(max_scenes=4, max_depth=2))
val_dataloader = dict(
    batch_size=2,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(max_scenes=2, max_depth=2))
