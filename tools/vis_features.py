#!/usr/bin/env python
"""Picture of a prepared scene's point features: top view, points coloured
by the first three principal components of their G2L features.

    python tools/vis_features.py CONFIG CHECKPOINT \\
        --scene data/dbbd_demo/val/scene0004_00 [--out features.png]

Without ``--out`` the picture goes beside the checkpoint, into its work
dir: ``<checkpoint name>_<scene>_features.png``.

CHECKPOINT is a training checkpoint or an encoder exported by
``tools/export_encoder.py``. The scene is read by the config's validation
dataset, so it goes through that dataset's own pipeline (its light,
seeded augmentation included) and ``max_depth``, exactly as validation
feeds it to the model; the points are drawn where the scene stores them.
"""
import argparse
import os
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Draw a scene coloured by the PCA of its point features.')
    parser.add_argument('config', help='training config')
    parser.add_argument('checkpoint',
                        help='training checkpoint or exported encoder')
    parser.add_argument('--scene', required=True,
                        help='prepared scene folder (OUT/<split>/<scene>)')
    parser.add_argument(
        '--out', help='output PNG; default: beside the checkpoint, '
        '<checkpoint name>_<scene>_features.png')
    parser.add_argument('--size', type=int, default=768,
                        help='pixels along the longer side')
    parser.add_argument('--point-radius', type=int, default=None,
                        help='pixels around each point (default: from '
                        'the point density)')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def build_model(cfg, checkpoint, device='cpu'):
    """The config's model with the checkpoint's (or export's) backbone.

    A training checkpoint must fit the whole model but its heads; an export
    holds the backbone only. Either way a mismatch is one error listing
    the keys (:func:`dbbd.engine.state_check.load_state_dict_checked`).
    """
    from dbbd.engine import load_checkpoint_safe
    from dbbd.engine.state_check import load_state_dict_checked
    from dbbd.engine.export import EXPORT_FORMAT, HEAD_PREFIXES, check_export
    from dbbd.registry import MODELS
    model = MODELS.build(cfg.model)
    ckpt = load_checkpoint_safe(checkpoint)
    if isinstance(ckpt, dict) and ckpt.get('format') == EXPORT_FORMAT:
        payload = check_export(ckpt, checkpoint)
        load_state_dict_checked(model.backbone, payload['state_dict'],
                                checkpoint)
    else:
        heads = [f'^{p}' for p in HEAD_PREFIXES]
        load_state_dict_checked(model, ckpt.get('state_dict', ckpt),
                                checkpoint, allow_missing=heads)
    return model.to(device).eval()


def scene_batch(cfg, scene_dir):
    """A one-scene batch of ``scene_dir``, made by the config's validation
    dataset (its own pipeline); also returns the stored coordinates."""
    import copy

    import numpy as np
    from dbbd.datasets import dbbd_collate
    from dbbd.datasets.scene_io import load_scene
    from dbbd.registry import DATASETS

    scene_dir = osp.normpath(scene_dir)
    split_dir, scene_id = osp.split(scene_dir)
    ds_cfg = copy.deepcopy(cfg.val_dataloader.dataset)
    ds_cfg.update(data_root=osp.dirname(split_dir),
                  split=osp.basename(split_dir), max_scenes=None,
                  auto_prepare=None)
    dataset = DATASETS.build(ds_cfg)
    sample = dataset[dataset.index_of(scene_id)]
    coord = np.array(load_scene(scene_dir, mmap=True)['coord'], np.float32)
    return dbbd_collate([sample]), coord


def default_out(checkpoint, scene_dir):
    """``work_dirs/x/epoch_10.pth`` and ``.../val/scene0004_00`` ->
    ``work_dirs/x/epoch_10_scene0004_00_features.png``: the work dir of
    the checkpoint, not the current folder."""
    stem = osp.splitext(osp.basename(checkpoint))[0]
    scene = osp.basename(osp.normpath(scene_dir))
    return osp.join(osp.dirname(checkpoint), f'{stem}_{scene}_features.png')


def main(argv=None):
    args = parse_args(argv)
    if args.out is None:
        args.out = default_out(args.checkpoint, args.scene)
    import torch
    from mmengine.config import Config

    import dbbd.engine  # noqa: F401  registries, safe loading
    from dbbd.datasets.scene_io import SceneFormatError
    from dbbd.engine import CheckpointLoadError
    from dbbd.evaluation.feature_vis import feature_image, save_png
    try:
        cfg = Config.fromfile(args.config)
        model = build_model(cfg, args.checkpoint, args.device)
        batch, coord = scene_batch(cfg, args.scene)
        with torch.no_grad():
            data = model.data_preprocessor(batch, False)
            feat = model(data['inputs'], mode='tensor')['point_feat']
    except (FileNotFoundError, ValueError, SceneFormatError,
            CheckpointLoadError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    image = feature_image(coord, feat, size=args.size,
                          point_radius=args.point_radius)
    folder = osp.dirname(osp.abspath(args.out))
    os.makedirs(folder, exist_ok=True)
    save_png(args.out, image)
    print(f'wrote {args.out} ({image.shape[1]}x{image.shape[0]}): '
          f'{coord.shape[0]} points, {feat.shape[1]}-d features')


if __name__ == '__main__':
    main()
