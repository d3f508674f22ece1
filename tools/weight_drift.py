#!/usr/bin/env python
"""How far a fine-tune moved its backbone from the pre-trained weights.

    python tools/weight_drift.py work_dirs/ft/epoch_40.pth \\
        [--pretrained work_dirs/pre/epoch_8.pth] [--config CONFIG] [--json]

Per convolution or linear weight of the backbone, and over every
parameter: the change relative to the start, ``|end - start| /
|start|``, and the cosine between start and end. A fine-tune that kept
its pre-trained weights shows small changes and cosines near 1; one that
rewrote them, changes near or above 1 and low cosines (docs/evaluation.md).

The run's config and its ``pretrained=`` come from the checkpoint (every
``tools/train.py`` checkpoint records its config); ``--config`` and
``--pretrained`` override them.
"""
import argparse
import json
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='How far fine-tuning moved a backbone from its '
        'pre-trained weights.')
    parser.add_argument('checkpoint',
                        help='checkpoint of a segmentation run (.pth)')
    parser.add_argument(
        '--pretrained', help="the pre-trained weights it started from "
        "(default: the run's pretrained=)")
    parser.add_argument(
        '--config', help="the run's segmentation config (default: the one "
        'recorded in the checkpoint)')
    parser.add_argument('--json', action='store_true',
                        help='print the result as one JSON line')
    return parser.parse_args(argv)


def run_config(checkpoint, config=None):
    """The config of the run that wrote ``checkpoint``: ``config`` if
    given, else the text its ``meta.cfg`` records."""
    from dbbd.apis.config import load_config
    if config is not None:
        return load_config(config)
    from mmengine.config import Config
    from dbbd.engine.checkpoint import load_checkpoint_safe
    meta = load_checkpoint_safe(checkpoint).get('meta') or {}
    text = meta.get('cfg')
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f'{checkpoint} records no config (meta.cfg); give '
                         'the run\'s config with --config')
    return Config.fromstring(text, '.py')


def main(argv=None):
    args = parse_args(argv)
    from dbbd.engine import CheckpointLoadError
    from dbbd.engine.pretrained import PretrainedLoadError
    from dbbd.apis.drift import fine_tune_drift, format_drift
    try:
        cfg = run_config(args.checkpoint, args.config)
        pretrained = args.pretrained or cfg.get('pretrained')
        if not pretrained:
            raise ValueError(
                f'{args.checkpoint}: the run trained from scratch '
                '(pretrained=None); give the pre-trained weights to '
                'compare with, --pretrained PATH')
        result = fine_tune_drift(cfg, pretrained, args.checkpoint)
    except (FileNotFoundError, ValueError, CheckpointLoadError,
            PretrainedLoadError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    if args.json:
        print(json.dumps(dict(checkpoint=args.checkpoint,
                              pretrained=pretrained, **result)))
        return
    print(f'{args.checkpoint} against {pretrained}:')
    print(format_drift(result))


if __name__ == '__main__':
    main()
