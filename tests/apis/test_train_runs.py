"""Watched training subprocesses and the results they leave
(dbbd.apis.train_runs): progress read from the growing log, one-line
failures, the last-epoch validation and the per-class IoU of the run's
own files."""
import json
import os
import os.path as osp
import sys
import textwrap

import pytest
import torch

SLOW_RUN = textwrap.dedent('''
    import time
    head = '12/07 08:47:43 - mmengine - INFO - '
    for epoch in (1, 2, 3):
        print(head + f'Epoch(train) [{epoch}][2/2]  lr: 1.0e-03  eta: '
              f'0:00:01  time: 0.04  loss: {4 - epoch}.5000  '
              'loss_seg: 1.0', flush=True)
        time.sleep(0.5)
    print(head + 'Epoch(val) [3][1/1]    val/mIoU: 0.1234  val/mAcc: 0.2',
          flush=True)
    time.sleep(0.6)
''')


def test_progress_lines_while_the_run_works(tmp_path):
    from dbbd.apis.train_runs import watch_process
    lines = []
    log = str(tmp_path / 'run' / 'train.log')
    seconds = watch_process([sys.executable, '-c', SLOW_RUN], log,
                            'fine-tune', max_epochs=3, interval=0.3,
                            out=lines.append)
    assert seconds > 1.5
    assert len(lines) >= 4, lines
    assert all(ln.startswith('  fine-tune: ') and f'log {log}' in ln
               for ln in lines)
    seen = ' '.join(lines)
    for epoch, loss in ((1, '3.5000'), (2, '2.5000'), (3, '1.5000')):
        assert f'epoch {epoch}/3 (iteration 2/2), loss {loss}' in seen
    assert 'val mIoU 12.34 at epoch 3' in lines[-1]


def test_a_failed_run_is_one_line(tmp_path):
    from dbbd.apis.train_runs import TrainRunError, watch_process
    script = 'import sys; print("step 1"); print("error: boom"); sys.exit(3)'
    with pytest.raises(TrainRunError) as err:
        watch_process([sys.executable, '-c', script],
                      str(tmp_path / 'train.log'), 'scratch', interval=5,
                      out=lambda line: None)
    msg = str(err.value)
    assert '\n' not in msg and 'exit status 3' in msg
    assert msg.endswith('error: boom') and 'train.log' in msg


def test_cancel_terminates_the_run(tmp_path):
    import threading
    import time

    from dbbd.apis.train_runs import TrainRunError, watch_process
    cancel = threading.Event()
    threading.Timer(0.5, cancel.set).start()
    start = time.monotonic()
    with pytest.raises(TrainRunError, match='another run of the table '
                       'failed') as err:
        watch_process([sys.executable, '-c', 'import time; '
                       'print("started", flush=True); time.sleep(60)'],
                      str(tmp_path / 'train.log'), 'scratch', interval=5,
                      out=lambda line: None, cancel=cancel)
    assert time.monotonic() - start < 20  # not the 60 s of the run
    assert '\n' not in str(err.value) and 'train.log' in str(err.value)


def _table(names, iou):
    from dbbd.evaluation.metrics.seg_metric import format_class_table
    nan = torch.tensor(float('nan'))
    scores = dict(iou=torch.tensor([nan if v is None else v for v in iou],
                                   dtype=torch.float64),
                  acc=torch.full((len(iou), ), 0.5, dtype=torch.float64),
                  gt_count=torch.tensor([10.0] * len(iou)))
    return ('12/07 08:47:44 - mmengine - INFO - SegMetric: 2 scene(s), 5290 '
            'labelled points\n' + format_class_table(names, scores) +
            '\nmIoU 1.00  mAcc 2.00  allAcc 3.00\n')


def _run_dir(work, stamp, miou, table, step=2):
    os.makedirs(osp.join(work, stamp, 'vis_data'), exist_ok=True)
    with open(osp.join(work, stamp, 'vis_data', 'scalars.json'), 'w') as f:
        for s in range(1, step + 1):
            f.write(json.dumps({'val/mIoU': miou if s == step else 0.9,
                                'val/mAcc': 0.5, 'val/allAcc': 0.7,
                                'step': s}) + '\n')
    with open(osp.join(work, stamp, f'{stamp}.log'), 'w') as f:
        f.write(_table(('wall', 'floor'), [0.9, 0.9]) + 'later\n' + table)


def test_outputs_of_the_newest_run(tmp_path):
    """The last SegMetric table of the newest run folder, class names
    with spaces included; a table that is not the scored validation's is
    not reported."""
    from dbbd.apis.train_runs import TrainRunError, run_outputs
    work = str(tmp_path)
    names = ('wall', 'shower curtain', 'sink')
    _run_dir(work, '20260101_000000', 0.9, _table(names, [0.9, 0.9, 0.9]))
    _run_dir(work, '20260102_000000', 0.25,
             _table(names, [0.123456, None, 0.376544]))
    got = run_outputs(work, 2)
    assert got['metrics'] == dict(mIoU=0.25, mAcc=0.5, allAcc=0.7)
    assert got['class_iou'] == {'wall': 0.1235, 'shower curtain': None,
                                'sink': 0.3765}
    assert got['scalars'].startswith(osp.join(work, '20260102_000000'))
    _run_dir(work, '20260103_000000', 0.4, _table(names, [0.1, 0.2, 0.3]))
    assert run_outputs(work, 2)['class_iou'] is None  # mean 0.2, not 0.4
    with pytest.raises(TrainRunError, match='no validation at the last '
                       r'epoch \(3\)'):
        run_outputs(work, 3)
    with pytest.raises(TrainRunError, match='no <run>/vis_data'):
        run_outputs(str(tmp_path / 'empty'), 2)
