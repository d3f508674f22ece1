"""Evaluating a checkpoint on a config's test split (its val split when the
config has none): what ``tools/test.py`` does after it has parsed its
arguments.

:func:`test` refuses a checkpoint of the other kind of config in one line
(naming the configs that fit it), adds the test-time augmentation and the
writing of predictions to the config, checks it as training does and runs
mmengine's test loop. Problems are :class:`CommandError` lines.
"""
import copy
import os
import os.path as osp

from .errors import CommandError
from .train import check_config, prepare_data, run_runner

__all__ = ['check_checkpoint_fits', 'tta_description', 'prepare_test_cfg',
           'check_output_dir', 'summary_line', 'test']

#: the checkout this package is in (its configs/ are searched for configs
#: that fit a checkpoint)
REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def _is_segmentation(cfg):
    from dbbd.models.segmentors import PointSegmentor
    from dbbd.registry import MODELS
    t = (cfg.get('model') or {}).get('type')
    cls = MODELS.get(t) if isinstance(t, str) else t
    return isinstance(cls, type) and issubclass(cls, PointSegmentor)


def check_checkpoint_fits(cfg, path):
    """Refuse, in one line, a checkpoint of the other kind of config."""
    from dbbd.engine import CheckpointLoadError, load_checkpoint_safe
    from dbbd.engine.pretrained import checkpoint_kind, seg_configs_for
    if not osp.isfile(path):
        raise CommandError(f'checkpoint {path} does not exist')
    try:
        payload = load_checkpoint_safe(path)
    except CheckpointLoadError as e:
        raise CommandError(str(e)) from None
    kind = checkpoint_kind(payload)
    if _is_segmentation(cfg) and kind in ('export', 'pretraining'):
        if kind == 'export':
            backbone = payload.get('backbone_cfg')
        else:
            model_cfg = (payload.get('meta') or {}).get('model_cfg') or {}
            backbone = model_cfg.get('backbone')
            if isinstance(backbone, dict) and 'in_channels' not in \
                    backbone and 'in_channels' in model_cfg:
                # a scene backbone takes the model's width (SceneContrast,
                # SelfDistill)
                backbone = dict(backbone,
                                in_channels=model_cfg['in_channels'])
        configs = seg_configs_for(backbone, osp.join(
            REPO_ROOT, 'configs', 'dbbd')) if backbone else []
        configs = [osp.relpath(c, REPO_ROOT) for c in configs]
        what = ('an exported encoder' if kind == 'export' else
                'a pre-training checkpoint')
        which = ' or '.join(configs) if configs else (
            'a segmentation config whose model.backbone is the '
            "checkpoint's (a child of configs/dbbd/seg_pointnet_scannet_ft."
            'py)')
        raise CommandError(
            f'{path} is {what}, not a segmentation checkpoint; make one '
            f'with `python tools/train.py {configs[0] if configs else "CONFIG"}'
            f' --cfg-options pretrained={path}` (fine-tuning; _lin for a '
            f'linear probe) and test what it writes; config: {which}')
    if not _is_segmentation(cfg) and kind == 'segmentation':
        raise CommandError(
            f'{path} is a segmentation checkpoint but the config\'s model '
            f'is {cfg.model.get("type")}; give the segmentation config it '
            'was trained with')


def tta_description(tta):
    """One line saying what ``--tta`` does with this ``tta_pipeline``."""
    views = next((t for t in tta if str(t.get('type', '')).split('.')[-1]
                  == 'MultiView'), None)
    if views is None:
        return '--tta: each scene scored with the config\'s tta_pipeline'
    rot = next((t for t in views.get('transforms') or []
                if str(t.get('type', '')).split('.')[-1] == 'ViewRotateZ'),
               None)
    how = (f', turned by {", ".join(f"{a:g}" for a in rot["angles"])} '
           'degrees about z' if rot and rot.get('angles') else '')
    return (f'--tta: each scene scored as the mean of the logits of '
            f'{views.get("num_views")} views{how} (the config\'s '
            'tta_pipeline)')


def prepare_test_cfg(cfg, config, checkpoint, tta=False, out=None,
                     show_dir=None):
    """Test split (else val), TTA pipeline, result hook, checkpoint.

    Args:
        config: the config's path (named in messages).
        checkpoint, tta, out, show_dir: as ``tools/test.py`` takes them.
    """
    if not cfg.get('test_dataloader'):
        cfg.test_dataloader = copy.deepcopy(cfg.val_dataloader)
        cfg.test_evaluator = copy.deepcopy(cfg.val_evaluator)
        cfg.test_cfg = dict(type='TestLoop')
    if tta:
        pipeline = cfg.get('tta_pipeline')
        if not pipeline:
            raise CommandError(f'--tta: {config} has no tta_pipeline (see '
                               'configs/_base_/datasets/scannet_seg.py)')
        pipeline = copy.deepcopy(list(pipeline))
        from dbbd.datasets.formatting import pipeline_feat_keys
        keys = pipeline_feat_keys(cfg.test_dataloader.dataset)
        for t in pipeline:  # the test loader's features (feat_keys=)
            if keys is not None and str(t.get('type', '')).startswith('Pack'):
                t['feat_keys'] = keys
        cfg.test_dataloader = copy.deepcopy(cfg.test_dataloader)
        cfg.test_dataloader.dataset.pipeline = pipeline
    if out or show_dir:
        if not _is_segmentation(cfg):
            raise CommandError(
                '--out and --show-dir write segmentation predictions; the '
                f'config\'s model is {cfg.model.get("type")}')
        hooks = list(cfg.get('custom_hooks') or [])
        hooks.append(dict(type='SegResultsHook', out_dir=out,
                          show_dir=show_dir))
        cfg.custom_hooks = hooks
    cfg.load_from = checkpoint
    cfg.resume = False
    return cfg


def check_output_dir(option, path):
    """``--out`` / ``--show-dir``: one line, before anything runs, when
    ``path`` cannot be the folder the predictions go to (a file, a path
    under a file, a folder that cannot be written); nothing is created."""
    full = osp.abspath(path)
    if osp.exists(full):
        if not osp.isdir(full):
            raise CommandError(f'{option} {path}: is a file, not a folder; '
                               'give a folder (it is created when missing)')
        if not os.access(full, os.W_OK | os.X_OK):
            raise CommandError(f'{option} {path}: the folder is not '
                               'writable; give another folder')
        return
    parent = full
    while not osp.exists(parent):
        parent = osp.dirname(parent)
    if not osp.isdir(parent):
        raise CommandError(f'{option} {path}: {parent} is a file, so no '
                           'folder can be made under it; give another '
                           'folder')
    if not os.access(parent, os.W_OK | os.X_OK):
        raise CommandError(f'{option} {path}: cannot create it, {parent} is '
                           'not writable; give another folder')


def summary_line(metrics):
    """``mIoU 45.67  mAcc 56.78  allAcc 78.90`` (percent), else every
    metric as it is."""
    keys = [k for k in ('mIoU', 'mAcc', 'allAcc') if k in metrics]
    if keys:
        return '  '.join(f'{k} {100 * float(metrics[k]):.2f}' for k in keys)
    return '  '.join(f'{k} {float(v):.4f}' for k, v in metrics.items()
                     if isinstance(v, (int, float)))


def test(cfg, config, checkpoint, tta=False, out=None, show_dir=None,
         verbose=False):
    """Evaluate ``checkpoint`` with the config :func:`dbbd.apis.train.
    build_config` made of ``config``; prints ``<checkpoint name>: <summary
    line>`` and returns the metrics.

    Raises:
        CommandError: one line.
    """
    import dbbd.engine  # noqa: F401  safe checkpoint loading, hooks
    check_checkpoint_fits(cfg, checkpoint)
    cfg = prepare_test_cfg(cfg, config, checkpoint, tta, out, show_dir)
    check_config(cfg, pretrained=False)
    prepare_data(cfg)
    from dbbd.engine.distributed import setup_distributed
    setup_distributed(cfg)

    from dbbd.datasets.errors import DataPreparationError
    from dbbd.datasets.scene_io import SceneFormatError
    from dbbd.engine.checkpoint import CheckpointLoadError
    from dbbd.utils.config_check import ConfigError

    def run(runner):
        if tta:
            runner.logger.info(tta_description(
                cfg.test_dataloader.dataset.pipeline))
        return runner.test()

    metrics = run_runner(cfg, verbose, run, (
        ConfigError, DataPreparationError, SceneFormatError,
        CheckpointLoadError))
    print(f'{osp.basename(checkpoint)}: {summary_line(metrics)}',
          flush=True)
    return metrics
