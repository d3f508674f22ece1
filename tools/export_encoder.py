#!/usr/bin/env python
"""Export the pre-trained encoder of a DBBD checkpoint (no heads, no
optimizer state), loadable with ``torch.load(weights_only=True)``.

    python tools/export_encoder.py work_dirs/x/best_loss_epoch_10.pth \\
        [--out encoder.pth] [--config configs/dbbd/dbbd_small_demo.py]

Without ``--out`` the export goes beside the checkpoint, into its work
dir: ``work_dirs/x/best_loss_epoch_10_encoder.pth``.

Load it back with ``dbbd.engine.load_exported_encoder(path)`` (a ``DBBD`` in
eval mode for ``mode='tensor'``) or take ``torch.load(path,
weights_only=True)['state_dict']`` into your own model; docs/evaluation.md.
"""
import argparse
import os.path as osp
import sys

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export the encoder weights of a DBBD checkpoint.')
    parser.add_argument('checkpoint', help='training checkpoint (.pth)')
    parser.add_argument(
        '--out', help='output file (.pth); default: beside the checkpoint, '
        '<checkpoint name>_encoder.pth')
    parser.add_argument(
        '--config',
        help='training config: its model replaces the checkpoint\'s '
        'meta.model_cfg, and its feat_keys / max_depth are recorded')
    return parser.parse_args(argv)


def default_out(checkpoint):
    """``work_dirs/x/epoch_10.pth`` -> ``work_dirs/x/epoch_10_encoder.pth``:
    the work dir of the checkpoint, not the current folder."""
    stem = osp.splitext(osp.basename(checkpoint))[0]
    return osp.join(osp.dirname(checkpoint), f'{stem}_encoder.pth')


def main(argv=None):
    args = parse_args(argv)
    if args.out is None:
        args.out = default_out(args.checkpoint)
    if osp.exists(args.out) and osp.exists(args.checkpoint) and \
            osp.samefile(args.out, args.checkpoint):
        print(f'error: --out {args.out} is the checkpoint itself; give '
              'another file', file=sys.stderr)
        sys.exit(1)
    from dbbd.engine import CheckpointLoadError
    from dbbd.engine.export import export_encoder
    try:
        payload = export_encoder(args.checkpoint, args.out,
                                 config=args.config)
    except (FileNotFoundError, ValueError, CheckpointLoadError) as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(1)
    n = sum(v.numel() for v in payload['state_dict'].values())
    print(f'wrote {args.out}: {len(payload["state_dict"])} tensors, {n} '
          f'parameters ({", ".join(payload["key_prefixes"])}), features '
          f'{payload["in_channels"]} -> {payload["out_channels"]} channels')


if __name__ == '__main__':
    main()
