"""A linear probe that fits its head: frozen point features extracted once,
a multinomial logistic regression fitted to convergence, scored on every
point of the validation split.

The protocol (what :func:`linear_probe` and :func:`floors` run):

1. the segmentation config (a ``_lin`` config; only its datasets, its
   backbone and ``pretrained=`` matter) is resolved with the options
   ``tools/train.py`` applies (:func:`load_config`): the training dataset
   keeps its label-efficient subset (``labelled_fraction`` /
   ``labelled_scenes`` / ``labelled_points`` / ``label_seed``);
2. the backbone is built and initialised as ``PointSegmentor.init_weights``
   does (``pretrained=`` loaded by
   :func:`~dbbd.engine.pretrained.load_pretrained_backbone`),
   or left at its seeded random initialisation (the untrained floor), and
   put in eval mode;
3. every scene of the training subset goes through the **validation**
   pipeline (deterministic: no augmentation) and the backbone; the
   per-point output ``(P, D)`` is carried to full resolution through
   ``inputs['inverse']`` when the pipeline grid-samples (as
   ``PointSegmentor.predict`` does), and the labelled points are kept;
4. if there are more than ``max_train_points`` of them, a uniform subset
   of that many is drawn (each point gets a key from a generator seeded
   by ``(seed, scene_id)``; the smallest keys are kept, streaming, so the
   subset does not depend on the scene order);
5. features are standardised with the fitting set's mean and standard
   deviation (as :func:`~dbbd.evaluation.metrics.linear_probe.
   linear_probe_scores` does) and :func:`~dbbd.evaluation.metrics.
   linear_probe.fit_linear_probe` fits the head (full-batch L-BFGS,
   float64, deterministic);
6. every labelled point of the validation split, at full resolution,
   is predicted (streaming, one scene at a time) into one confusion
   matrix; mIoU, mAcc and allAcc as :class:`~dbbd.evaluation.SegMetric`
   reads them (:func:`scores_from_confusion`).

The floors (:func:`floors`) share steps 1-6 on the same points: the
majority class of the labelled training points (all of them, not the
subsample) predicted everywhere, a probe on the raw input features (the
packed ``feat`` of the config: normals, colours, ...), and a probe on
the untrained backbone.
"""
import copy
import re
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

__all__ = ['load_config', 'class_names_of', 'build_segmentor',
           'backbone_features', 'raw_features', 'probe_dataset',
           'run_probes', 'scores_from_confusion', 'linear_probe', 'floors',
           'DEFAULT_MAX_TRAIN_POINTS']

#: Default cap on the points the probe is fitted on.
DEFAULT_MAX_TRAIN_POINTS = 100000


# ---------------------------------------------------------------------------
# Configs and models
# ---------------------------------------------------------------------------


def load_config(path: str, options: Optional[dict] = None):
    """``path`` with ``options`` applied as ``tools/train.py
    --cfg-options`` applies them (:func:`dbbd.apis.config.load_config`)."""
    from .config import load_config as load
    return load(path, options)


def _num_classes(cfg) -> int:
    model = cfg.get('model') or {}
    k = model.get('num_classes', cfg.get('num_classes'))
    if not isinstance(k, int) or k < 2:
        raise ValueError(f'the config has no num_classes >= 2 (got {k!r}); '
                         'set the top-level num_classes')
    return k


def class_names_of(cfg) -> list:
    """The class names the config's metric prints (``class 0``, ... when
    it names none)."""
    k = _num_classes(cfg)
    ev = cfg.get('val_evaluator')
    for m in (ev if isinstance(ev, (list, tuple)) else [ev]):
        names = (m or {}).get('class_names') if isinstance(m, dict) else None
        if names is not None and len(names) == k:
            return [str(n) for n in names]
    names = cfg.get('class_names') or (cfg.get('model') or {}).get(
        'class_names')
    if names is not None and len(names) == k:
        return [str(n) for n in names]
    return [f'class {i}' for i in range(k)]


class _NoInitDump:
    """Drops mmengine's per-parameter initialisation dump (one log record
    per tensor, printed on the console when the logger has no file), and
    nothing else, from the current logger while it is attached."""

    _DUMP = re.compile(r'^\n\S+ - torch\.Size\(')

    def filter(self, record):
        return not self._DUMP.match(str(record.getMessage()))

    def __enter__(self):
        from mmengine.logging import MMLogger
        self.logger = MMLogger.get_current_instance()
        self.logger.addFilter(self)
        return self

    def __exit__(self, *exc):
        self.logger.removeFilter(self)


def build_segmentor(cfg, pretrained: Optional[str] = None, seed: int = 0,
                    device='cpu'):
    """The config's model, initialised as the Runner does
    (``init_weights``: ``pretrained`` loaded into the backbone; None: the
    random initialisation drawn after ``torch.manual_seed(seed)``), in
    eval mode on ``device``. The global random state is left as it was.

    Raises:
        PretrainedLoadError: ``pretrained`` does not fit the backbone (one
            line).
    """
    import dbbd.models  # noqa: F401  registers the models
    from dbbd.models.segmentors.config import set_pretrained
    from dbbd.registry import MODELS
    cfg = copy.deepcopy(cfg)
    set_pretrained(cfg, pretrained)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = MODELS.build(cfg.model)
        with _NoInitDump():
            model.init_weights()
    return model.to(device).eval()


def backbone_features(model) -> Callable:
    """``inputs -> (P, D)``: the backbone's per-point output of view 1, at
    network resolution (no gradient)."""
    def extract(inputs):
        with torch.no_grad():
            return model.extract_feat(inputs, 'view1')
    extract.model = model
    return extract


def raw_features(inputs):
    """``inputs -> (P, C)``: the packed input features of view 1 (the
    config's ``feat_keys``)."""
    return inputs['view1']['feat']


def probe_dataset(cfg, split: str):
    """The dataset the probe reads: ``'train'``, the training loader's
    dataset (its label-efficient subset) with the validation pipeline
    (deterministic views, no augmentation); ``'val'``, the validation
    loader's dataset."""
    import dbbd.datasets  # noqa: F401  registers the datasets
    from dbbd.registry import DATASETS
    if split not in ('train', 'val'):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    ds = copy.deepcopy(cfg[f'{split}_dataloader'].dataset)
    if split == 'train':
        ds['pipeline'] = copy.deepcopy(cfg.val_dataloader.dataset.pipeline)
    return DATASETS.build(ds)


# ---------------------------------------------------------------------------
# Extraction
# ---------------------------------------------------------------------------


def _scenes(dataset, device, log, what):
    """``(scene_id, inputs)`` of every scene, one scene per batch, on
    ``device``."""
    from dbbd.datasets import dbbd_collate
    from dbbd.models.data_preprocessor import DBBDDataPreprocessor
    pre = DBBDDataPreprocessor().to(device)
    n = len(dataset)
    last = time.monotonic()
    for i in range(n):
        batch = dbbd_collate([dataset[i]])
        data = pre(batch, False)
        sample = (batch.get('data_samples') or [{}])[0]
        if log is not None and time.monotonic() - last > 30:
            log(f'  probe: {what} scene {i + 1}/{n}')
            last = time.monotonic()
        yield str(sample.get('scene_id', i)), data['inputs']


def _labelled(inputs, ignore_index):
    """Full-resolution labels of the scene's labelled points, their
    positions among the full-resolution points and their rows in the
    network's points (through ``inverse`` after grid sampling)."""
    if 'inverse' in inputs:
        labels, inverse = inputs['origin_segment'], inputs['inverse']
    else:
        labels, inverse = inputs['segment'], None
    keep = torch.nonzero(labels != ignore_index)[:, 0]
    rows = keep if inverse is None else inverse.index_select(0, keep)
    return labels.index_select(0, keep).cpu(), keep.cpu(), rows


def _features(extractors, inputs, rows):
    out = {}
    for name, fn in extractors.items():
        feat = fn(inputs)
        out[name] = feat.index_select(0, rows.to(feat.device)).float().cpu()
    return out


def collect_training_points(cfg, extractors: Dict[str, Callable],
                            max_points: int = DEFAULT_MAX_TRAIN_POINTS,
                            seed: int = 0, device='cpu', log=None) -> dict:
    """Features of the labelled points of the training subset.

    Returns:
        dict(features={name: (n, D) float32}, labels (n,) int64,
        class_counts (K,) int64 of ALL the labelled points, n_labelled,
        n_scenes): ``n = min(n_labelled, max_points)`` points, a uniform
        subset drawn as the module docstring says.
    """
    k = _num_classes(cfg)
    ignore = (cfg.get('model') or {}).get('ignore_index', -1)
    dataset = probe_dataset(cfg, 'train')
    counts = torch.zeros(k, dtype=torch.long)
    keys = torch.empty(0, dtype=torch.float64)
    labels = torch.empty(0, dtype=torch.long)
    feats: Dict[str, torch.Tensor] = {}
    total = 0
    from dbbd.utils.rng import scene_rng
    for scene_id, inputs in _scenes(dataset, device, log, 'training'):
        y, pos, rows = _labelled(inputs, ignore)
        if y.numel() == 0:
            continue
        total += y.numel()
        counts += torch.bincount(y, minlength=k)[:k]
        key = torch.from_numpy(scene_rng(seed, scene_id).random(y.numel()))
        if keys.numel() >= max_points:  # only points that can enter
            take = torch.nonzero(key < keys.max())[:, 0]
            if take.numel() == 0:
                continue
            y, key, rows = y[take], key[take], rows.index_select(
                0, take.to(rows.device))
        f = _features(extractors, inputs, rows)
        keys = torch.cat([keys, key])
        labels = torch.cat([labels, y])
        for name, x in f.items():
            feats[name] = torch.cat([feats[name], x]) if name in feats \
                else x
        if keys.numel() > max_points:
            order = torch.from_numpy(np.argsort(keys.numpy(), kind='stable')
                                     [:max_points])
            keys, labels = keys[order], labels[order]
            feats = {n: x[order] for n, x in feats.items()}
    return dict(features=feats, labels=labels, class_counts=counts,
                n_labelled=total, n_scenes=len(dataset))


class FittedProbe:
    """Standardisation statistics and the fitted head of one feature
    kind."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, num_classes: int,
                 steps: int, weight_decay: float,
                 class_weight: Optional[torch.Tensor] = None):
        from dbbd.evaluation.metrics.linear_probe import fit_linear_probe
        x = x.double()
        self.mean = x.mean(0)
        std = x.std(0, unbiased=False)
        self.std = torch.where(std > 1e-6, std, torch.ones_like(std))
        self.w, self.b = fit_linear_probe(self.standardise(x), y,
                                          num_classes, steps, weight_decay,
                                          class_weight)

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() - self.mean) / self.std

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (self.standardise(x) @ self.w + self.b).argmax(1)


def score_validation(cfg, extractors: Dict[str, Callable],
                     probes: Dict[str, FittedProbe],
                     constants: Optional[Dict[str, int]] = None,
                     device='cpu', log=None) -> dict:
    """One confusion matrix per probe (and per constant prediction) over
    every labelled point of the validation split at full resolution.

    Returns:
        dict(confusion={name: (K, K) int64 numpy}, n_points, n_scenes).
    """
    from dbbd.evaluation.metrics.seg_metric import confusion_matrix
    k = _num_classes(cfg)
    ignore = (cfg.get('model') or {}).get('ignore_index', -1)
    dataset = probe_dataset(cfg, 'val')
    cms = {n: torch.zeros(k, k, dtype=torch.long)
           for n in list(probes) + list(constants or {})}
    used = {n: fn for n, fn in extractors.items() if n in probes}
    points = 0
    for _, inputs in _scenes(dataset, device, log, 'validation'):
        y, _, rows = _labelled(inputs, ignore)
        if y.numel() == 0:
            continue
        points += y.numel()
        for name, x in _features(used, inputs, rows).items():
            cms[name] += confusion_matrix(probes[name].predict(x), y, k)
        for name, c in (constants or {}).items():
            cms[name] += confusion_matrix(torch.full_like(y, c), y, k)
    return dict(confusion={n: cm.numpy() for n, cm in cms.items()},
                n_points=points, n_scenes=len(dataset))


def scores_from_confusion(cm, class_names: Optional[Sequence[str]] = None
                          ) -> dict:
    """mIoU, mAcc, allAcc as :class:`~dbbd.evaluation.SegMetric` reads them
    off one confusion matrix (mIoU over the classes in the ground truth or
    the prediction), and ``class_iou``: class name -> IoU, or None for a
    class in neither."""
    from dbbd.evaluation.metrics.seg_metric import iou_from_confusion
    cm = torch.as_tensor(np.asarray(cm))
    scores = iou_from_confusion(cm)
    names = list(class_names) if class_names is not None else [
        f'class {i}' for i in range(cm.shape[0])]

    def nanmean(x):
        ok = ~torch.isnan(x)
        return float(x[ok].mean()) if bool(ok.any()) else float('nan')

    total = float(cm.sum())
    return dict(
        mIoU=nanmean(scores['iou']), mAcc=nanmean(scores['acc']),
        allAcc=float(scores['tp'].sum()) / total if total else float('nan'),
        class_iou={n: (None if torch.isnan(v) else float(v))
                   for n, v in zip(names, scores['iou'])})


# ---------------------------------------------------------------------------
# The probes
# ---------------------------------------------------------------------------


def run_probes(cfg, extractors: Dict[str, Callable], majority: bool = False,
               max_train_points: int = DEFAULT_MAX_TRAIN_POINTS,
               seed: int = 0, steps: int = 100, weight_decay: float = 1e-3,
               device='cpu', log=None, balance: str = 'auto') -> dict:
    """Fit one probe per extractor on the same training points and score
    them on the validation split (module docstring); with ``majority``,
    also the majority class of the labelled training points.

    ``balance='auto'`` (default) fits every probe class-balanced, with the
    weights ``class_weight='auto'`` gives the segmentation loss (ENet's
    ``1 / ln(1.02 + f)`` of the labelled training points' class
    frequencies, :func:`~dbbd.models.losses.seg_losses.auto_class_weight`),
    so that a probe is read as the fine-tune is trained; ``'none'``: the
    plain cross-entropy (on imbalanced data it drifts to the majority
    class).

    Returns:
        dict(confusion={name: (K, K) int64}, class_names, n_labelled
        (labelled training points), n_fit (points the probes were fitted
        on), majority_class (or None), feature_dims={name: D},
        train_scenes, val_points, val_scenes).

    Raises:
        ValueError: no labelled training point.
    """
    if not isinstance(max_train_points, int) or max_train_points < 1:
        raise ValueError(f'max_train_points must be an int >= 1, got '
                         f'{max_train_points!r}')
    k = _num_classes(cfg)
    train = collect_training_points(cfg, extractors, max_train_points, seed,
                                    device, log)
    if train['n_labelled'] == 0:
        raise ValueError('the training subset has no labelled point; check '
                         'labelled_points / labelled_scenes and the labels '
                         'of the training split')
    if balance not in ('auto', 'none'):
        raise ValueError(f"balance must be 'auto' or 'none', got "
                         f'{balance!r}')
    weight = None
    if balance == 'auto':
        from dbbd.models.losses.seg_losses import auto_class_weight
        weight = auto_class_weight(
            train['class_counts'].tolist()).double()
    probes = {n: FittedProbe(x, train['labels'], k, steps, weight_decay,
                             weight)
              for n, x in train['features'].items()}
    constants = {}
    top = None
    if majority:
        top = int(torch.argmax(train['class_counts']))
        constants['majority'] = top
    val = score_validation(cfg, extractors, probes, constants, device, log)
    return dict(confusion=val['confusion'], class_names=class_names_of(cfg),
                n_labelled=int(train['n_labelled']),
                n_fit=int(train['labels'].numel()), majority_class=top,
                feature_dims={n: int(x.shape[1])
                              for n, x in train['features'].items()},
                train_scenes=train['n_scenes'], val_points=val['n_points'],
                val_scenes=val['n_scenes'])


def _device(device):
    if device is not None:
        return torch.device(device)
    return torch.device('cuda' if torch.cuda.is_available() else 'cpu')


def _prepare(cfg):
    """The demo's one-off preparation and the data check of
    ``tools/train.py``."""
    from dbbd.datasets.demo import prepare_configured_demo
    from dbbd.datasets.config_check import check_data_exists
    prepare_configured_demo(cfg)
    check_data_exists(cfg)


def linear_probe(cfg, pretrained: Optional[str], seed: int = 0,
                 max_train_points: int = DEFAULT_MAX_TRAIN_POINTS,
                 steps: int = 100, weight_decay: float = 1e-3, device=None,
                 log=None, balance: str = 'auto') -> dict:
    """The linear probe of the backbone ``pretrained`` (a path as
    ``pretrained=`` takes; None: the backbone as built) on the config's
    datasets: :func:`run_probes` with one extractor, ``'backbone'``."""
    dev = _device(device)
    _prepare(cfg)
    model = build_segmentor(cfg, pretrained, seed, dev)
    return run_probes(cfg, dict(backbone=backbone_features(model)),
                      majority=False, max_train_points=max_train_points,
                      seed=seed, steps=steps, weight_decay=weight_decay,
                      device=dev, log=log, balance=balance)


def floors(cfg, seed: int = 0,
           max_train_points: int = DEFAULT_MAX_TRAIN_POINTS,
           steps: int = 100, weight_decay: float = 1e-3, device=None,
           log=None, balance: str = 'auto') -> dict:
    """The floors of the config's split and labelled points:
    ``'majority'`` (the most frequent class of the labelled training
    points, everywhere), ``'raw'`` (a probe on the packed input features)
    and ``'untrained'`` (a probe on the backbone at its random
    initialisation, seeded by ``seed``); :func:`run_probes`' result."""
    dev = _device(device)
    _prepare(cfg)
    model = build_segmentor(cfg, None, seed, dev)
    return run_probes(cfg, dict(raw=raw_features,
                                untrained=backbone_features(model)),
                      majority=True, max_train_points=max_train_points,
                      seed=seed, steps=steps, weight_decay=weight_decay,
                      device=dev, log=log, balance=balance)
