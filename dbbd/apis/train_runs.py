"""``tools/train.py`` runs as subprocesses, watched, and what they leave.

- :class:`SubprocessTrainer` starts ``tools/train.py CONFIG --work-dir DIR
  --cfg-options ...`` with its output going to a log file, and while it
  works prints a progress line every ``interval`` seconds (epoch k/N, the
  last logged loss, the last validation mIoU, where the log is), read
  from the log as it grows;
- :func:`run_outputs` reads a finished run's results from mmengine's own
  outputs: the validation of the last epoch from
  ``<stamp>/vis_data/scalars.json`` and the per-class IoU of that
  validation from the ``SegMetric`` table of ``<stamp>/<stamp>.log``.
"""
import json
import math
import os
import os.path as osp
import re
import subprocess
import sys
import time
from typing import Callable, List, Optional

__all__ = ['TrainRunError', 'SubprocessTrainer', 'LogProgress',
           'train_command', 'watch_process', 'run_outputs', 'read_outputs',
           'final_val',
           'class_iou_from_log', 'default_train_script', 'METRICS']

METRICS = ('mIoU', 'mAcc', 'allAcc')


class TrainRunError(RuntimeError):
    """A training run failed or left no usable output; one line."""


def default_train_script() -> str:
    """``tools/train.py`` of the checkout this package is in."""
    import dbbd
    return osp.join(osp.dirname(osp.dirname(osp.abspath(dbbd.__file__))),
                    'tools', 'train.py')


def _opt(key, value) -> str:
    """One ``--cfg-options`` word: DictAction reads back what ``str``
    writes of numbers, None, lists and tuples."""
    return f'{key}={value}'


def train_command(config: str, work_dir: str, opts: dict,
                  train_script: Optional[str] = None) -> List[str]:
    cmd = [sys.executable, train_script or default_train_script(), config,
           '--work-dir', work_dir]
    if opts:
        cmd += ['--cfg-options'] + [_opt(k, v) for k, v in opts.items()]
    return cmd


_TRAIN = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\s*\[\s*(\d+)\s*/\s*(\d+)\]'
                    r'.*?\sloss:\s*(\S+)')
_VAL = re.compile(r'Epoch\(val\)\s*\[(\d+)\].*?val/mIoU:\s*(\S+)')


class LogProgress:
    """Reads a growing mmengine log and keeps its last training and
    validation lines."""

    def __init__(self, path: str):
        self.path = path
        self.offset = 0
        self.partial = ''
        self.epoch = self.iteration = self.iterations = None
        self.loss = None
        self.val = None  # (epoch, mIoU)

    def update(self) -> None:
        try:
            with open(self.path, 'rb') as f:
                f.seek(self.offset)
                data = f.read()
        except OSError:
            return
        self.offset += len(data)
        text = self.partial + data.decode('utf-8', errors='replace')
        lines = text.split('\n')
        self.partial = lines.pop()
        for line in lines:
            m = _TRAIN.search(line)
            if m:
                self.epoch, self.iteration, self.iterations = (
                    int(m.group(1)), int(m.group(2)), int(m.group(3)))
                self.loss = m.group(4)
                continue
            m = _VAL.search(line)
            if m:
                self.val = (int(m.group(1)), m.group(2))

    def line(self, label: str, max_epochs: Optional[int],
             seconds: float) -> str:
        if self.epoch is None:
            state = 'starting (no training iteration logged yet)'
        else:
            state = (f'epoch {self.epoch}/{max_epochs or "?"} (iteration '
                     f'{self.iteration}/{self.iterations}), loss {self.loss}')
            if self.val is not None:
                try:
                    miou = f'{100 * float(self.val[1]):.2f}'
                except ValueError:
                    miou = self.val[1]
                state += f', val mIoU {miou} at epoch {self.val[0]}'
        return f'  {label}: {state}; {seconds:.0f} s; log {self.path}'


def watch_process(cmd: List[str], log_path: str, label: str,
                  max_epochs: Optional[int] = None, interval: float = 30.0,
                  out: Callable[[str], None] = print,
                  env: Optional[dict] = None, cancel=None) -> float:
    """Run ``cmd`` with stdout and stderr into ``log_path``; every
    ``interval`` seconds print its progress (:class:`LogProgress`).

    ``cancel`` (a ``threading.Event``, optional): when it is set the
    process is terminated and :class:`TrainRunError` raised (another run
    of the same table failed; see ``tools/transfer.py --jobs``).

    Returns:
        the wall time in seconds.

    Raises:
        TrainRunError: a non-zero exit status, with the last line of the
            log; or cancelled.
    """
    os.makedirs(osp.dirname(osp.abspath(log_path)), exist_ok=True)
    start = time.monotonic()
    progress = LogProgress(log_path)
    with open(log_path, 'w') as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                env=env if env is not None else dict(
                                    os.environ, PYTHONUNBUFFERED='1'))
        try:
            next_print = start + interval
            while True:
                try:
                    rc = proc.wait(timeout=max(0.05, min(
                        1.0, next_print - time.monotonic())))
                    break
                except subprocess.TimeoutExpired:
                    pass
                if cancel is not None and cancel.is_set():
                    raise _Cancelled()
                if time.monotonic() >= next_print:
                    progress.update()
                    out(progress.line(label, max_epochs,
                                      time.monotonic() - start))
                    next_print += interval
        except BaseException as e:  # Ctrl-C: do not leave the run behind
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if isinstance(e, _Cancelled):
                raise TrainRunError(f'{label} stopped (log {log_path}): '
                                    'another run of the table failed') \
                    from None
            raise
    seconds = time.monotonic() - start
    if rc != 0:
        with open(log_path, errors='replace') as f:
            lines = [ln for ln in f.read().strip().splitlines() if ln]
        raise TrainRunError(
            f'{label} failed (exit status {rc}, log {log_path}): '
            f'{lines[-1] if lines else "no output"}')
    return seconds


class _Cancelled(Exception):
    """``watch_process``'s ``cancel`` was set."""


class SubprocessTrainer:
    """``trainer(config, work_dir, opts, log_path, label, max_epochs)``:
    one ``tools/train.py`` run, watched (:func:`watch_process`); returns
    its wall time. Several calls may run at once from threads; setting
    ``cancel`` (a ``threading.Event``) stops every one of them."""

    def __init__(self, train_script: Optional[str] = None,
                 interval: float = 30.0,
                 out: Callable[[str], None] = print):
        import threading
        self.train_script = train_script or default_train_script()
        if not osp.isfile(self.train_script):
            raise TrainRunError(f'{self.train_script} does not exist; run '
                                'from a checkout of the project')
        self.interval = interval
        self.out = out
        self.cancel = threading.Event()

    def __call__(self, config, work_dir, opts, log_path, label,
                 max_epochs=None) -> float:
        os.makedirs(work_dir, exist_ok=True)
        cmd = train_command(config, work_dir, opts, self.train_script)
        self.out(f'  $ {" ".join(cmd[1:])}')
        return watch_process(cmd, log_path, label, max_epochs,
                             self.interval, self.out, cancel=self.cancel)


def _stamps(work_dir: str) -> List[str]:
    """The run folders (mmengine's timestamps) holding a scalars file,
    oldest first."""
    if not osp.isdir(work_dir):
        return []
    return sorted(d for d in os.listdir(work_dir)
                  if osp.isfile(osp.join(work_dir, d, 'vis_data',
                                         'scalars.json')))


def final_val(scalars: str, max_epochs: int) -> dict:
    """The validation metrics of epoch ``max_epochs`` from a
    ``scalars.json`` (the last validation must be that epoch's).

    Raises:
        TrainRunError: no validation at the last epoch, or unreadable.
    """
    last = None
    try:
        with open(scalars) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                rec = json.loads(line)
                if 'val/mIoU' in rec:
                    last = rec
    except (OSError, ValueError) as e:
        raise TrainRunError(f'{scalars}: unreadable ({type(e).__name__}: '
                            f'{e})') from None
    if last is None or last.get('step') != max_epochs:
        raise TrainRunError(
            f'{scalars}: no validation at the last epoch ({max_epochs}); '
            'the config must validate at its last epoch (val_interval a '
            'divisor of max_epochs)')
    return {k: float(last[f'val/{k}']) for k in METRICS}


_ROW = re.compile(r'^(?P<name>\S.*?)\s+(?P<iou>n/a|-?\d+(?:\.\d+)?)\s+'
                  r'(?P<acc>n/a|-?\d+(?:\.\d+)?)\s+(?P<n>\d+)\s*$')


def class_iou_from_log(log_path: str, class_names=None) -> Optional[dict]:
    """Class name -> IoU (a fraction; None for ``n/a``) of the last
    ``SegMetric`` table in a log, or None when the log holds none."""
    try:
        with open(log_path, errors='replace') as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    starts = [i for i, ln in enumerate(lines)
              if 'SegMetric:' in ln and 'labelled points' in ln]
    if not starts:
        return None
    i = starts[-1] + 1
    if i + 1 >= len(lines) or not lines[i].lstrip().startswith('class'):
        return None
    out = {}
    for line in lines[i + 2:]:
        m = _ROW.match(line)
        if not m:
            break
        iou = m.group('iou')
        out[m.group('name')] = None if iou == 'n/a' else round(
            float(iou) / 100, 6)
    if not out or (class_names is not None and
                   list(out) != list(class_names)):
        return None
    return out


def read_outputs(scalars: str, log: Optional[str], max_epochs: int) -> dict:
    """A segmentation run's results from its own files: the validation of
    epoch ``max_epochs`` from ``scalars`` and, when ``log`` holds the
    ``SegMetric`` table of that validation, the per-class IoU (2 decimals
    in percent, as logged; None otherwise).

    Returns:
        dict(metrics, class_iou, scalars, log).

    Raises:
        TrainRunError: no validation at the last epoch.
    """
    metrics = final_val(scalars, max_epochs)
    class_iou = class_iou_from_log(log) if log and osp.isfile(log) else None
    if class_iou is not None:
        known = [v for v in class_iou.values() if v is not None]
        # the table must be the one of the scored validation
        if not known or not math.isclose(sum(known) / len(known),
                                         metrics['mIoU'], abs_tol=1e-4):
            class_iou = None
    return dict(metrics=metrics, class_iou=class_iou, scalars=scalars,
                log=log)


def run_outputs(work_dir: str, max_epochs: int) -> dict:
    """:func:`read_outputs` of the newest run folder of ``work_dir``
    (mmengine's ``<stamp>/vis_data/scalars.json`` and ``<stamp>/<stamp>.log``;
    ``work_dir/train.log`` when the latter is missing).

    Raises:
        TrainRunError: no scalars file or no validation at the last
            epoch.
    """
    stamps = _stamps(work_dir)
    if not stamps:
        raise TrainRunError(f'{work_dir}: no <run>/vis_data/scalars.json '
                            '(is LocalVisBackend off?)')
    stamp = stamps[-1]
    scalars = osp.join(work_dir, stamp, 'vis_data', 'scalars.json')
    log = osp.join(work_dir, stamp, f'{stamp}.log')
    if not osp.isfile(log):
        log = osp.join(work_dir, 'train.log')
    return read_outputs(scalars, log if osp.isfile(log) else None,
                        max_epochs)
