"""A stand-in for the tools/train.py runs of the transfer table: writes
what a run leaves (a checkpoint and ``last_checkpoint`` for a
pre-training; ``<stamp>/vis_data/scalars.json`` and ``<stamp>/<stamp>.log``
with a SegMetric table for a segmentation run) in milliseconds.

``import fake_train`` (tests/helpers is on sys.path).
"""
import hashlib
import json
import os
import os.path as osp

SEG_NAMES = ('wall', 'floor', 'cabinet')


def _digest(obj) -> int:
    text = json.dumps({k: str(v) for k, v in obj.items()}, sort_keys=True)
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


class FakeTrainer:
    """``trainer(config, work_dir, opts, log_path, label, max_epochs)``.

    Args:
        miou: label ('fine-tune', 'scratch') -> mIoU of its runs; seed k
            adds ``0.01 * k`` (so several seeds have a spread).
    """

    def __init__(self, miou=None):
        self.miou = dict({'fine-tune': 0.30, 'scratch': 0.20}, **(miou or {}))
        self.calls = []

    def labels(self):
        return [c[0] for c in self.calls]

    def __call__(self, config, work_dir, opts, log_path, label,
                 max_epochs=None):
        self.calls.append((label, work_dir, dict(opts)))
        os.makedirs(work_dir, exist_ok=True)
        with open(log_path, 'w') as f:
            f.write('fake run\n')
        if label == 'pre-training':
            self._pretrain(config, work_dir, opts, max_epochs)
        else:
            self._segment(work_dir, opts, label, max_epochs)
        return 1.5

    def _pretrain(self, config, work_dir, opts, max_epochs):
        import torch

        from dbbd.apis.probe import load_config
        from dbbd.engine.hooks.checkpoint_hook import to_plain
        from dbbd.registry import MODELS
        cfg = load_config(config, opts)
        torch.manual_seed(_digest(opts))  # another option, other weights
        model = MODELS.build(cfg.model)
        name = f'epoch_{max_epochs}.pth'
        torch.save(dict(meta=dict(epoch=max_epochs,
                                  model_cfg=to_plain(cfg.model)),
                        state_dict=model.state_dict()),
                   osp.join(work_dir, name))
        with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
            f.write(name)

    def _segment(self, work_dir, opts, label, max_epochs):
        seed = int(opts.get('randomness.seed', 0))
        miou = round(self.miou[label] + 0.01 * seed, 4)
        stamp = f'20260101_{len(self.calls):06d}'
        vis = osp.join(work_dir, stamp, 'vis_data')
        os.makedirs(vis, exist_ok=True)
        with open(osp.join(vis, 'scalars.json'), 'w') as f:
            for epoch in range(1, max_epochs + 1):
                f.write(json.dumps({'loss': 1.0, 'step': epoch}) + '\n')
                f.write(json.dumps({'val/mIoU': miou if epoch == max_epochs
                                    else 0.0, 'val/mAcc': 0.5,
                                    'val/allAcc': 0.6, 'step': epoch}) + '\n')
        # classes: wall miou - 0.1, floor miou + 0.1, cabinet n/a
        rows = [('wall', 100 * (miou - 0.1)), ('floor', 100 * (miou + 0.1)),
                ('cabinet', None)]
        table = ['class              IoU     Acc      points',
                 '--------------  ------  ------  ----------']
        for name, iou in rows:
            cell = '   n/a' if iou is None else f'{iou:6.2f}'
            table.append(f'{name:<14}  {cell}  {"   n/a":>6}  '
                         f'{0 if iou is None else 10:>10d}')
        with open(osp.join(work_dir, stamp, f'{stamp}.log'), 'w') as f:
            f.write('01/01 00:00:00 - mmengine - INFO - SegMetric: 2 '
                    'scene(s), 20 labelled points\n' + '\n'.join(table)
                    + f'\nmIoU {100 * miou:.2f}  mAcc 50.00  allAcc 60.00\n')
