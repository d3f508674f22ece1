# AdamW, a linear warm-up of the learning rate over the first 2 epochs
# (from 1% of it), then a cosine to 1e-5 over the rest of the run;
# validation every 5 epochs. For fine-tuning: a freshly initialised head on
# top of pre-trained weights sends its largest, least informed gradients
# through the backbone in the first steps, and the warm-up keeps those steps
# small (mmpretrain's and Pointcept's fine-tuning schedules warm up too).
_base_ = ['./adamw_cosine_100e.py']

# The cosine has no `end` and no `T_max`: it runs from the warm-up's end to
# train_cfg.max_epochs, so `--cfg-options train_cfg.max_epochs=N` stretches
# it (see adamw_cosine_100e.py).
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=True, begin=0,
         end=2, convert_to_iter_based=True),
    dict(type='ResumableCosineAnnealingLR', eta_min=1e-5, by_epoch=True,
         begin=2, convert_to_iter_based=True),
]
