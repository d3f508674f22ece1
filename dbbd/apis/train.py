"""Training with mmengine's Runner: what ``tools/train.py`` does after it has
parsed its arguments.

:func:`build_config` reads a config and applies the command line to it;
:func:`train` checks it (types, values, data, ``pretrained=``, the work-dir
lock), builds the Runner and trains, or with ``validate`` runs the
validation once. Every problem a user can fix is a :class:`CommandError`
of one line, raised before anything is built where it can be known then.
:func:`run_runner` is the part ``tools/test.py`` shares.
"""
import os
import os.path as osp

from .errors import CommandError

__all__ = ['CONFIG_SUFFIXES', 'missing_config_message', 'build_config',
           'set_validation', 'prepare_data', 'run_runner', 'train']

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


def build_config(config, work_dir=None, resume=None, amp=False,
                 cfg_options=None, launcher='none'):
    """Load the config and apply the command line to it.

    A Python config is a program and runs when it is read; a YAML config is
    read as plain data (``import dbbd`` makes mmengine read YAML safely).

    Args:
        config: the config file.
        work_dir: ``--work-dir`` (default ``work_dirs/<config name>``).
        resume: ``--resume``: None, ``'auto'`` (the work dir's latest
            checkpoint) or a checkpoint path.
        amp: ``--amp`` (mixed precision; also ``amp = True`` in a config).
        cfg_options: ``--cfg-options`` (see
            :func:`dbbd.apis.config.apply_options`).
        launcher: ``--launcher``.

    Raises:
        CommandError: one line, before anything is built.
    """
    from mmengine.config import Config

    import dbbd  # noqa: F401  YAML without Python objects
    if not osp.isfile(config):
        raise CommandError(missing_config_message(config))
    try:
        cfg = Config.fromfile(config)
    except Exception as e:  # syntax errors, missing _base_ files, imports
        first = str(e).strip().splitlines()[0] if str(e).strip() else ''
        raise CommandError(f'cannot read config {config}: '
                           f'{type(e).__name__}: {first}') from None
    from dbbd.utils.config_check import ConfigError, check_top_level_keys
    try:
        # a top-level key nothing reads: a typo that would be ignored
        check_top_level_keys(cfg, config, set(cfg.keys()), {
            str(k).split('.')[0] for k in (cfg_options or {})})
    except ConfigError as e:
        raise CommandError(str(e)) from None
    cfg.launcher = launcher
    from .config import apply_options
    try:
        apply_options(cfg, cfg_options)
    except ValueError as e:
        raise CommandError(str(e)) from None
    # class_weight='auto': the hook that counts the training labels
    from dbbd.engine.hooks.class_weight_hook import add_class_weight_hook
    add_class_weight_hook(cfg)

    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs',
                                osp.splitext(osp.basename(config))[0])

    if resume == 'auto':
        from dbbd.engine.checkpoint import (CheckpointLoadError,
                                            find_latest_checkpoint)
        try:
            # one line now, before anything is built, when last_checkpoint
            # is empty or names a missing file, an address or a file
            # outside the work dir
            find_latest_checkpoint(cfg.work_dir)
        except CheckpointLoadError as e:
            raise CommandError(str(e)) from None
        cfg.resume = True
        cfg.load_from = None
    elif resume is not None:
        if not osp.isfile(resume):
            raise CommandError(f'--resume: checkpoint {resume} does not '
                               'exist')
        cfg.resume = True
        cfg.load_from = resume

    # --amp, or `amp = True` in the config (a config switch like with_cp)
    if amp or cfg.get('amp', False):
        from dbbd.engine.amp import amp_optim_wrapper
        try:
            cfg.optim_wrapper = amp_optim_wrapper(cfg.optim_wrapper)
        except RuntimeError as e:
            raise CommandError(str(e)) from None
    return cfg


def set_validation(cfg, validate, resume=None):
    """``--validate [CHECKPOINT]`` (``validate``: None, ``''`` or a path):
    load the checkpoint's weights (none: the initialised model), resume
    nothing."""
    if validate is None:
        return
    if resume is not None:
        raise CommandError('--validate and --resume exclude each other '
                           '(--validate CHECKPOINT validates the weights of '
                           'any checkpoint)')
    if validate and not osp.isfile(validate):
        raise CommandError(f'--validate: checkpoint {validate} does not '
                           'exist')
    cfg.load_from = validate or None
    cfg.resume = False


def print_metrics(metrics):
    """The validation metrics as one JSON line on stdout (rank 0)."""
    import json

    from mmengine.dist import is_main_process

    from dbbd.engine.hooks.checkpoint_hook import to_plain
    if is_main_process():
        print(json.dumps(to_plain(metrics)), flush=True)


def check_config(cfg, pretrained=True):
    """The checks of a built config, before the data: types, values and
    the segmentation datasets' arguments
    (:func:`dbbd.apis.config.check_config`), the feature width, and with
    ``pretrained`` the ``pretrained=`` file matched to the model."""
    from dbbd.datasets.errors import DataPreparationError
    from dbbd.datasets.formatting import check_feat_width
    from dbbd.engine.pretrained import (PretrainedLoadError,
                                        check_pretrained_config)
    from dbbd.utils.config_check import ConfigError

    from .config import check_config as check_keys
    try:
        check_keys(cfg)
        check_feat_width(cfg)
        if pretrained:
            # read and matched to the model's shapes now, loaded when the
            # Runner initialises the model (validation loads no pretrained)
            check_pretrained_config(cfg)
    except (ConfigError, DataPreparationError, PretrainedLoadError,
            ValueError) as e:
        raise CommandError(str(e)) from None


def prepare_data(cfg):
    """Before the Runner is built: the demo's one-off data preparation,
    its progress first on the console (the Runner's environment, config and
    hook dump comes after), then one line for a split folder that is
    missing or holds no prepared scene, which leaves nothing in the work
    dir (the Runner would have made its timestamped folder)."""
    from dbbd.datasets.config_check import check_data_exists
    from dbbd.datasets.demo import prepare_configured_demo
    from dbbd.datasets.errors import DataPreparationError
    try:
        prepare_configured_demo(cfg)
        check_data_exists(cfg)
    except (DataPreparationError, RuntimeError) as e:
        raise CommandError(str(e)) from None


def _say_where_the_setup_went(runner):
    """One console line in place of mmengine's set-up dump."""
    runner.logger.info(
        f'Environment, config and hook order: in {runner.log_file} '
        '(--verbose prints them here too)')


def _batch_scene_ids(runner):
    """The scene ids of the training batch the runner was in, as its
    NonFiniteLossHook saw them; None when unknown."""
    from dbbd.engine import NonFiniteLossHook
    for hook in getattr(runner, 'hooks', None) or []:
        if isinstance(hook, NonFiniteLossHook):
            return hook.batch_scene_ids()
    return None


def run_runner(cfg, verbose, run, known):
    """Build the Runner of ``cfg`` and return ``run(runner)``.

    The errors of ``known`` (their message says what is wrong and what to
    do; one with a ``naming(scene_ids)`` method also names the scenes of
    the batch) and a full disk become one :class:`CommandError` line.
    ``verbose``: mmengine's set-up dump on the console too.
    """
    from dbbd.engine.checkpoint import is_disk_full
    from dbbd.engine.runner import (DBBDRunner, QuietDBBDRunner,
                                    disk_full_message, disk_full_stops)
    runner = None
    try:
        with disk_full_stops():
            runner = (DBBDRunner if verbose else
                      QuietDBBDRunner).from_cfg(cfg)
            if not verbose:
                _say_where_the_setup_went(runner)
            return run(runner)
    except known as e:
        naming = getattr(e, 'naming', None)
        raise CommandError(naming(_batch_scene_ids(runner)) if callable(
            naming) else str(e)) from None
    except OSError as e:
        if not is_disk_full(e):
            raise
        raise CommandError(disk_full_message(e, cfg.work_dir)) from None


def train(cfg, validate=None, verbose=False):
    """Train with the config :func:`build_config` made, or with
    ``validate`` (``''``: the initialised model, else a checkpoint, see
    :func:`set_validation`) run its validation once and print the metrics
    as one JSON line.

    Raises:
        CommandError: one line; what cannot work is refused before the
            Runner is built.
    """
    import dbbd.engine  # noqa: F401  safe checkpoint loading, hooks
    from dbbd.datasets.errors import DataPreparationError
    from dbbd.engine.distributed import setup_distributed
    from dbbd.utils.config_check import ConfigError
    check_config(cfg, pretrained=validate is None)
    prepare_data(cfg)
    if validate is None:
        from dbbd.datasets.config_check import check_labelled_subset
        try:
            # labelled_scenes / labelled_points against the prepared scenes
            check_labelled_subset(cfg)
        except (ConfigError, DataPreparationError) as e:
            raise CommandError(str(e)) from None

    setup_distributed(cfg)

    from mmengine.dist import get_rank

    from dbbd.engine.run_lock import WorkDirLockedError, acquire_work_dir_lock
    if get_rank() == 0 and validate is None:
        try:
            # held until this process ends: one training run per work dir
            acquire_work_dir_lock(cfg.work_dir)
        except WorkDirLockedError as e:
            raise CommandError(str(e)) from None

    from dbbd.datasets.scene_io import SceneFormatError
    from dbbd.engine import NonFiniteLossError
    from dbbd.engine.checkpoint import CheckpointLoadError, CheckpointWriteError
    from dbbd.models.backbones.spunet import TooFewVoxelsError

    # errors whose message already says what is wrong and what to do
    known = (ConfigError, DataPreparationError, SceneFormatError,
             NonFiniteLossError, CheckpointLoadError, CheckpointWriteError,
             TooFewVoxelsError)
    if validate is None:
        run_runner(cfg, verbose, lambda runner: runner.train(), known)
    else:
        print_metrics(run_runner(cfg, verbose, lambda runner: runner.val(),
                                 known))
