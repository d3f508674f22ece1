# Runtime shared by every DBBD config: scope, hooks, logging, seeding.
default_scope = 'dbbd'

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=10),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # Atomic writes; keeps the last 3 and the best by validation loss.
    checkpoint=dict(
        type='SafeCheckpointHook',
        interval=10,
        max_keep_ckpts=3,
        save_best='loss',
        rule='less',
        save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
)

# mmengine's default min_delta (0.1) stops contrastive runs that are still
# improving; 1e-3 of the validation loss counts as an improvement here.
# patience counts validations (every val_interval epochs).
custom_hooks = [
    dict(
        type='ResumableEarlyStoppingHook',
        monitor='loss',
        rule='less',
        min_delta=1e-3,
        patience=5),
    dict(type='NonFiniteLossHook'),
    dict(type='StrictLoadHook'),
    # BatchNorm statistics recomputed from 16 training batches at the end of
    # each epoch, before the checkpoint and the validation read them (a
    # no-op without BatchNorm, e.g. on the PointNet path)
    dict(type='PreciseBNHook', num_iters=16),
    # collapse/* scalars and a picture of the point features at each
    # validation (docs/evaluation.md)
    # reads the embeddings the validation loss compared (no extra forward);
    # the first 8 batches are plenty for the statistics
    dict(type='CollapseWatchHook', max_batches=8),
    dict(type='FeatureVisHook'),
]

env_cfg = dict(
    cudnn_benchmark=False,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    # tools/train.py switches to gloo when there is no GPU.
    dist_cfg=dict(backend='nccl'),
)

vis_backends = [
    dict(type='LocalVisBackend'),
    dict(type='TensorboardVisBackend'),
]
visualizer = dict(type='Visualizer', vis_backends=vis_backends)

# train/loss, train/<part>, val/loss, val/<part>, learning_rate in TensorBoard
log_processor = dict(type='DBBDLogProcessor', window_size=10, by_epoch=True)
log_level = 'INFO'

load_from = None
resume = False

# Mixed precision on GPU (bf16 where supported, else fp16 with dynamic loss
# scaling), the same as --amp. Gradient checkpointing is model.with_cp.
amp = False

# An explicit seed: with seed=None a resumed run reshuffles differently.
randomness = dict(seed=0, deterministic=False)
