#!/usr/bin/env python
"""Train DBBD with mmengine's Runner.

    python tools/train.py configs/dbbd/dbbd_small_demo.py
    python tools/train.py CONFIG --work-dir work_dirs/x --resume
    python tools/train.py CONFIG --resume work_dirs/x/epoch_10.pth
    python tools/train.py CONFIG --cfg-options train_cfg.max_epochs=10
    python tools/train.py CONFIG --validate [CHECKPOINT]
"""
import argparse
import os

# OpenMP threads that spin while they wait slow a busy CPU several times
# (measured: 29 s against 4.2 s a pre-training step on a loaded 2-core
# machine) and cost nothing measurable on an idle one; set before torch
# is imported, inherited by the runs this starts. Export another value to
# override.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description='Train a DBBD model.')
    parser.add_argument('config', help='config file (Python or YAML)')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go (default: work_dirs/<config>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        default=None,
        metavar='CHECKPOINT',
        help='resume: alone, from the latest checkpoint of the work dir; '
        'with a path, from that checkpoint')
    parser.add_argument(
        '--validate',
        nargs='?',
        const='',
        default=None,
        metavar='CHECKPOINT',
        help="run the config's validation once, no training: alone, of the "
        'initialised model; with a path, of that checkpoint\'s weights; the '
        'metrics end the output as one JSON line')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed precision (GPU): bf16 where supported, else fp16 with '
        'dynamic loss scaling')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config keys, e.g. train_cfg.max_epochs=10; '
        'data_root=PATH sets the data root of both loaders; '
        "feat_keys=\"('normal','color')\" sets the point features of both "
        'loaders and the model\'s input width (\'intensity\' is 1 channel); '
        'num_classes=N sets the model, the metrics and the datasets, and '
        "class_names=\"['a','b',...]\" the names the metrics show "
        '(numbered class0.. when none fit); pretrained=PATH (segmentation '
        'configs) starts the backbone from a pre-training checkpoint or an '
        'exported encoder')
    parser.add_argument(
        '--verbose',
        action='store_true',
        help="print mmengine's set-up dump (environment, the whole config, "
        'the hook order) on the console too; by default it goes to the log '
        'file in the work dir only')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm'],
        default='none',
        help='job launcher for distributed training')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def fail(msg):
    """One line on stderr, exit status 1."""
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(1)


CONFIG_SUFFIXES = ('.py', '.yaml', '.yml', '.json')


def missing_config_message(path):
    """The one line for a config path that names no file, with the closest
    config names of its folder (a misspelt name)."""
    import difflib
    folder, name = osp.split(path)
    if folder and not osp.isdir(folder):
        return f'config file {path} does not exist (no folder {folder})'
    names = sorted(n for n in os.listdir(folder or '.')
                   if n.endswith(CONFIG_SUFFIXES)
                   and osp.isfile(osp.join(folder, n)))
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    hint = ('; did you mean ' + ', '.join(osp.join(folder, c) for c in close)
            + '?') if close else ''
    return f'config file {path} does not exist{hint}'


def build_config(args):
    """Load the config and apply the command line to it.

    A Python config is a program and runs when it is read; a YAML config is
    read as plain data (``import dbbd`` makes mmengine read YAML safely).
    """
    from mmengine.config import Config

    import dbbd  # noqa: F401  YAML without Python objects
    if not osp.isfile(args.config):
        fail(missing_config_message(args.config))
    try:
        cfg = Config.fromfile(args.config)
    except Exception as e:  # syntax errors, missing _base_ files, imports
        first = str(e).strip().splitlines()[0] if str(e).strip() else ''
        fail(f'cannot read config {args.config}: {type(e).__name__}: {first}')
    from dbbd.utils.config_check import ConfigError, check_top_level_keys
    try:
        # a top-level key nothing reads: a typo that would be ignored
        check_top_level_keys(cfg, args.config, set(cfg.keys()), {
            str(k).split('.')[0] for k in (args.cfg_options or {})})
    except ConfigError as e:
        fail(str(e))
    cfg.launcher = args.launcher
    from dbbd.apis.config import apply_options
    try:
        apply_options(cfg, args.cfg_options)
    except ValueError as e:
        fail(str(e))
    # class_weight='auto': the hook that counts the training labels
    from dbbd.engine.hooks.class_weight_hook import add_class_weight_hook
    add_class_weight_hook(cfg)

    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join(
            'work_dirs', osp.splitext(osp.basename(args.config))[0])

    if args.resume == 'auto':
        from dbbd.engine.checkpoint import (CheckpointLoadError,
                                            find_latest_checkpoint)
        try:
            # one line now, before anything is built, when last_checkpoint
            # is empty or names a missing file, an address or a file
            # outside the work dir
            find_latest_checkpoint(cfg.work_dir)
        except CheckpointLoadError as e:
            fail(str(e))
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.isfile(args.resume):
            fail(f'--resume: checkpoint {args.resume} does not exist')
        cfg.resume = True
        cfg.load_from = args.resume

    # --amp, or `amp = True` in the config (a config switch like with_cp)
    if args.amp or cfg.get('amp', False):
        from dbbd.engine.amp import amp_optim_wrapper
        try:
            cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper)
        except RuntimeError as e:
            fail(str(e))
    return cfg


def set_validation(cfg, args):
    """``--validate [CHECKPOINT]``: load the checkpoint's weights (none:
    the initialised model), resume nothing."""
    if args.validate is None:
        return
    if args.resume is not None:
        fail('--validate and --resume exclude each other (--validate '
             'CHECKPOINT validates the weights of any checkpoint)')
    if args.validate and not osp.isfile(args.validate):
        fail(f'--validate: checkpoint {args.validate} does not exist')
    cfg.load_from = args.validate or None
    cfg.resume = False


def print_metrics(metrics):
    """The validation metrics as one JSON line on stdout (rank 0)."""
    import json

    from mmengine.dist import is_main_process

    from dbbd.engine.hooks.checkpoint_hook import to_plain
    if is_main_process():
        print(json.dumps(to_plain(metrics)), flush=True)


def prepare_data(cfg):
    """Before the Runner is built: the demo's one-off data preparation,
    its progress first on the console (the Runner's environment, config and
    hook dump comes after), then one line for a split folder that is
    missing or holds no prepared scene, which leaves nothing in the work
    dir (the Runner would have made its timestamped folder)."""
    from dbbd.datasets.dbbd_dataset import DataPreparationError
    from dbbd.datasets.config_check import check_data_exists
    from dbbd.datasets.demo import prepare_configured_demo
    try:
        prepare_configured_demo(cfg)
        check_data_exists(cfg)
    except (DataPreparationError, RuntimeError) as e:
        fail(str(e))


def say_where_the_setup_went(runner):
    """One console line in place of mmengine's set-up dump."""
    runner.logger.info(
        f'Environment, config and hook order: in {runner.log_file} '
        '(--verbose prints them here too)')


def batch_scene_ids(runner):
    """The scene ids of the training batch the runner was in, as its
    NonFiniteLossHook saw them; None when unknown."""
    from dbbd.engine import NonFiniteLossHook
    for hook in getattr(runner, 'hooks', None) or []:
        if isinstance(hook, NonFiniteLossHook):
            return hook.batch_scene_ids()
    return None


def main(argv=None):
    args = parse_args(argv)
    cfg = build_config(args)
    set_validation(cfg, args)

    import dbbd.engine  # noqa: F401  safe checkpoint loading, hooks
    from dbbd.datasets.dbbd_dataset import DataPreparationError
    from dbbd.datasets.formatting import check_feat_width
    from dbbd.engine.distributed import setup_distributed
    from dbbd.engine.pretrained import (PretrainedLoadError,
                                        check_pretrained_config)
    from dbbd.apis.config import check_config
    from dbbd.utils.config_check import ConfigError
    try:
        check_config(cfg)
        check_feat_width(cfg)
        if args.validate is None:
            # read and matched to the model's shapes now, loaded when the
            # Runner initialises the model (validation loads no pretrained)
            check_pretrained_config(cfg)
    except (ConfigError, DataPreparationError, PretrainedLoadError,
            ValueError) as e:
        fail(str(e))
    prepare_data(cfg)
    if args.validate is None:
        from dbbd.datasets.config_check import check_labelled_subset
        try:
            # labelled_scenes / labelled_points against the prepared scenes
            check_labelled_subset(cfg)
        except (ConfigError, DataPreparationError) as e:
            fail(str(e))

    setup_distributed(cfg)

    from mmengine.dist import get_rank
    from dbbd.engine.run_lock import WorkDirLockedError, acquire_work_dir_lock
    if get_rank() == 0 and args.validate is None:
        try:
            # held until this process ends: one training run per work dir
            acquire_work_dir_lock(cfg.work_dir)
        except WorkDirLockedError as e:
            fail(str(e))

    from dbbd.datasets.scene_io import SceneFormatError
    from dbbd.engine import NonFiniteLossError
    from dbbd.engine.checkpoint import (CheckpointLoadError,
                                        CheckpointWriteError, is_disk_full)
    from dbbd.engine.runner import (DBBDRunner, QuietDBBDRunner,
                                    disk_full_message, disk_full_stops)
    from dbbd.models.backbones.spunet import TooFewVoxelsError

    runner = None
    # errors whose message already says what is wrong and what to do
    known = (ConfigError, DataPreparationError, SceneFormatError,
             NonFiniteLossError, CheckpointLoadError, CheckpointWriteError)
    try:
        with disk_full_stops():
            runner = (DBBDRunner if args.verbose else
                      QuietDBBDRunner).from_cfg(cfg)
            if not args.verbose:
                say_where_the_setup_went(runner)
            if args.validate is None:
                runner.train()
            else:
                print_metrics(runner.val())
    except known as e:
        fail(str(e))
    except TooFewVoxelsError as e:
        fail(e.naming(batch_scene_ids(runner)))
    except OSError as e:
        if not is_disk_full(e):
            raise
        fail(disk_full_message(e, cfg.work_dir))


if __name__ == '__main__':
    main()
