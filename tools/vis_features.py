#!/usr/bin/env python
"""Picture of a prepared scene's point features: top view, points coloured
by the first three principal components of their G2L features.

    python tools/vis_features.py CONFIG CHECKPOINT \\
        --scene data/dbbd_demo/val/scene0004_00 --out features.png

CHECKPOINT is a training checkpoint or an encoder exported by
``tools/export_encoder.py``. The scene goes through the config's validation
pipeline without its random transforms (so the room is drawn as stored) and
the config's ``max_depth``; ``--augment`` keeps the random transforms
(seeded, as validation does for the first scene).
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
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--size', type=int, default=768,
                        help='pixels along the longer side')
    parser.add_argument('--point-radius', type=int, default=None,
                        help='pixels around each point (default: from '
                        'the point density)')
    parser.add_argument('--augment', action='store_true',
                        help='keep the random validation transforms')
    parser.add_argument('--device', default='cpu')
    return parser.parse_args(argv)


def build_model(cfg, checkpoint, device='cpu'):
    """The config's model with the checkpoint's (or export's) weights."""
    from dbbd.engine import load_checkpoint_safe
    from dbbd.models.export import HEAD_PREFIXES
    from dbbd.registry import MODELS
    model = MODELS.build(cfg.model)
    ckpt = load_checkpoint_safe(checkpoint)
    state = ckpt.get('state_dict', ckpt)
    state = {k[7:] if k.startswith('module.') else k: v
             for k, v in state.items()}
    res = model.load_state_dict(state, strict=False)
    missing = [k for k in res.missing_keys if not k.startswith(HEAD_PREFIXES)]
    if missing or res.unexpected_keys:
        raise ValueError(f'{checkpoint} does not fit the config\'s model '
                         f'(missing {missing[:5]}, unexpected '
                         f'{res.unexpected_keys[:5]})')
    return model.to(device).eval()


def scene_batch(cfg, scene_dir, augment=False, seed=0):
    """A one-scene batch of ``scene_dir`` as the validation loader makes
    it (one view); also returns the stored coordinates."""
    import numpy as np
    from dbbd.datasets import dbbd_collate, truncate_tree
    from dbbd.datasets.scene_io import load_scene
    from dbbd.registry import TRANSFORMS
    from mmengine.dataset import Compose

    ds = cfg.val_dataloader.dataset
    feat_keys = tuple(ds.get('feat_keys', ('normal', )))
    scene = load_scene(scene_dir, mmap=False)
    tree = truncate_tree(scene['tree'], ds.get('max_depth'))
    steps = []
    for t in ds.get('pipeline', []):
        name = t['type'] if isinstance(t, dict) else type(t).__name__
        if augment or not (name.startswith('Random') or name in (
                'ColorJitter', 'ChromaticAutoContrast')):
            steps.append(TRANSFORMS.build(t) if isinstance(t, dict) else t)
    coord = np.array(scene['coord'], np.float32)
    results = Compose(steps)(dict(
        coord=coord.copy(), normal=np.array(scene['normal'], np.float32),
        color=None if scene.get('color') is None else np.array(
            scene['color'], np.float32),
        rng=np.random.default_rng([seed, 0, 0, 0])))
    for k in feat_keys:
        if results.get(k) is None:
            raise ValueError(f'{scene_dir}: the config\'s feat_keys asks for '
                             f'{k!r}, which the scene lacks')
    feat = np.concatenate([np.asarray(results[k], np.float32)
                           for k in feat_keys], axis=1)
    n = coord.shape[0]
    sample = dict(
        scene_id=scene['scene_id'], num_points=n,
        point_region=np.asarray(tree.point_region),
        region_parent=np.asarray(tree.region_parent),
        region_center=np.asarray(tree.region_center),
        level_offset=np.asarray(tree.level_offset),
        segment=np.full(n, -1, np.int64), sample_seed=seed,
        view1=dict(coord=np.ascontiguousarray(results['coord'], np.float32),
                   feat=np.ascontiguousarray(feat)))
    return dbbd_collate([sample]), coord


def main(argv=None):
    args = parse_args(argv)
    import torch
    from mmengine.config import Config

    import dbbd.engine  # noqa: F401  registries, safe loading
    from dbbd.datasets.scene_io import SceneFormatError
    from dbbd.engine import CheckpointLoadError
    from dbbd.evaluation.feature_vis import feature_image, save_png
    try:
        cfg = Config.fromfile(args.config)
        model = build_model(cfg, args.checkpoint, args.device)
        batch, coord = scene_batch(cfg, args.scene, args.augment)
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
