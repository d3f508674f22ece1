# AdamW, cosine to 1e-5 over the whole run (100 epochs), validation every 5
# epochs.
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.01))

# No `end`, no `T_max`: the cosine spans train_cfg.max_epochs, so
# `--cfg-options train_cfg.max_epochs=N` stretches it; a resumed run takes
# its progress from the checkpoint and its length from the config.
param_scheduler = [
    dict(
        type='ResumableCosineAnnealingLR',
        eta_min=1e-5,
        by_epoch=True,
        begin=0,
        convert_to_iter_based=True),
]

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=100, val_interval=5)
val_cfg = dict(type='ValLoop')
