"""The fitted linear probe and the floors (dbbd.apis.probe), in this
process on the synthetic rooms: the same numbers as a direct computation,
the labelled training subset, every validation point at full resolution
(through ``inverse`` after grid sampling), the majority class of the
training points, the seeded subsample and the seeded untrained
backbone."""
import copy
import os.path as osp
import shutil

import numpy as np
import pytest
import torch

from tiny import SEG_DEMO, TINY_SEG_MODEL

K = 20


def _cfg(root, **dataset):
    from dbbd.apis.probe import load_config
    opts = dict(data_root=root, model=copy.deepcopy(TINY_SEG_MODEL))
    for k, v in dataset.items():
        opts[f'train_dataloader.dataset.{k}'] = v
    return load_config(SEG_DEMO['lin'], opts)


def _scenes(cfg, split):
    """(coord-free) one-scene batches of a split through the validation
    pipeline, built here without dbbd.apis."""
    from dbbd.datasets import dbbd_collate
    from dbbd.registry import DATASETS
    ds = copy.deepcopy(cfg[f'{split}_dataloader'].dataset)
    ds['pipeline'] = copy.deepcopy(cfg.val_dataloader.dataset.pipeline)
    dataset = DATASETS.build(ds)
    return [dbbd_collate([dataset[i]])['inputs'] for i in range(len(dataset))]


def _enet_weights(y, k):
    """ENet's 1 / ln(1.02 + f) of the class frequencies, mean 1 over the
    classes present, 0 for the others; written out here."""
    counts = torch.bincount(y, minlength=k).double()
    f = counts / counts.sum()
    w = torch.where(counts > 0, 1 / torch.log(1.02 + f),
                    torch.zeros_like(f))
    # the float32 weights the segmentation loss uses
    return (w / w[counts > 0].mean()).float().double()


def _direct(cfg, feature, steps=100, balance='auto'):
    """The probe computed in the plainest way: all labelled training
    points, the in-loop probe's standardisation and fit (class-balanced by
    ENet's weights unless balance='none'), one confusion matrix over every
    labelled validation point (full resolution)."""
    from dbbd.evaluation.metrics.linear_probe import (_standardise,
                                                      fit_linear_probe,
                                                      predict_linear_probe)
    from dbbd.evaluation.metrics.seg_metric import confusion_matrix

    def points(split):
        xs, ys = [], []
        for inputs in _scenes(cfg, split):
            x = feature(inputs)
            if 'inverse' in inputs:
                x, y = x[inputs['inverse']], inputs['origin_segment']
            else:
                y = inputs['segment']
            xs.append(x[y >= 0].float())
            ys.append(y[y >= 0])
        return torch.cat(xs), torch.cat(ys)

    x_tr, y_tr = points('train')
    x_ev, y_ev = points('val')
    a, b = _standardise(x_tr.double(), x_ev.double())
    cw = _enet_weights(y_tr, K) if balance == 'auto' else None
    w, bias = fit_linear_probe(a, y_tr, K, steps, 1e-3, cw)
    cm = confusion_matrix(predict_linear_probe(b, w, bias), y_ev, K)
    return cm.numpy(), y_tr, y_ev


def test_load_config_applies_options_as_train_does(demo_root, tmp_path):
    from dbbd.apis.probe import load_config
    from tools.train import build_config, parse_args
    words = [f'data_root={demo_root}', "feat_keys=('normal','color')",
             'num_classes=13', f'pretrained={tmp_path}/x.pth',
             'train_cfg.max_epochs=3',
             'train_dataloader.dataset.labelled_points=7']
    args = parse_args([SEG_DEMO['lin'], '--work-dir', str(tmp_path),
                       '--cfg-options', *words])
    want = build_config(args).to_dict()
    got = load_config(SEG_DEMO['lin'], args.cfg_options).to_dict()
    for key in ('launcher', 'work_dir'):
        want.pop(key, None)
        got.pop(key, None)
    assert got == want
    assert got['model']['backbone']['in_channels'] == 6
    assert got['val_dataloader']['dataset']['data_root'] == demo_root
    assert got['model']['pretrained'] == f'{tmp_path}/x.pth'


def test_probe_and_floors_equal_a_direct_computation(demo_root):
    """Backbone, raw features and the majority class on 30 labelled points
    per training room: the confusion matrices of a plain computation, the
    training points are the labelled subset, the validation points are
    every labelled point of the split."""
    from dbbd.apis.probe import (backbone_features, build_segmentor,
                                 raw_features, run_probes)
    from dbbd.datasets.scene_io import list_prepared, load_scene
    from dbbd.evaluation.metrics.seg_metric import confusion_matrix
    cfg = _cfg(demo_root, labelled_points=30, label_seed=2)
    model = build_segmentor(cfg, None, seed=5)
    got = run_probes(cfg, dict(backbone=backbone_features(model),
                               raw=raw_features), majority=True, seed=2)

    feat = backbone_features(model)
    cm, y_tr, y_ev = _direct(cfg, feat)
    np.testing.assert_array_equal(got['confusion']['backbone'], cm)
    cm_raw, _, _ = _direct(cfg, raw_features)
    np.testing.assert_array_equal(got['confusion']['raw'], cm_raw)
    assert got['n_labelled'] == got['n_fit'] == y_tr.numel() == 4 * 30
    assert got['feature_dims'] == dict(backbone=16, raw=3)
    # every labelled validation point, counted once
    val = [load_scene(d) for d in list_prepared(osp.join(demo_root, 'val'))]
    n_val = sum(int((np.asarray(s['segment']) >= 0).sum()) for s in val)
    assert got['val_points'] == n_val == int(cm.sum())
    # the majority class of the labelled training points, everywhere
    top = int(torch.bincount(y_tr, minlength=K).argmax())
    assert got['majority_class'] == top
    want = confusion_matrix(torch.full_like(y_ev, top), y_ev, K).numpy()
    np.testing.assert_array_equal(got['confusion']['majority'], want)
    # balance='none': the plain (unweighted) fit, and it differs here
    plain = run_probes(cfg, dict(raw=raw_features), seed=2, balance='none')
    cm_plain, _, _ = _direct(cfg, raw_features, balance='none')
    np.testing.assert_array_equal(plain['confusion']['raw'], cm_plain)
    assert not np.array_equal(cm_plain, cm_raw)


@pytest.fixture(scope='module')
def swapped_root(demo_root, tmp_path_factory):
    """The demo rooms with labels 0 and 1 swapped in the validation
    scenes only: the training split's most frequent class (wall, 0) is
    no longer the validation split's."""
    root = str(tmp_path_factory.mktemp('swapped') / 'data')
    shutil.copytree(demo_root, root)
    from dbbd.datasets.scene_io import list_prepared
    for scene in list_prepared(osp.join(root, 'val')):
        path = osp.join(scene, 'segment.npy')
        seg = np.load(path)
        out = seg.copy()
        out[seg == 0], out[seg == 1] = 1, 0
        np.save(path, out)
    return root


def test_majority_is_the_training_points_class(swapped_root):
    from dbbd.apis.probe import floors, scores_from_confusion
    cfg = _cfg(swapped_root)
    got = floors(cfg, seed=0, device='cpu')
    assert got['majority_class'] == 0  # wall, the training split's
    cm = got['confusion']['majority']
    assert cm[:, 0].sum() == cm.sum()  # predicted everywhere
    val_counts = cm.sum(1)
    assert val_counts.argmax() == 1  # the validation split's is floor
    scores = scores_from_confusion(cm, got['class_names'])
    present = int((val_counts > 0).sum())
    assert scores['mIoU'] == pytest.approx(
        val_counts[0] / val_counts.sum() / present)
    assert scores['class_iou']['floor'] == 0.0


def test_grid_sampled_backbone_is_read_at_full_resolution(demo_root):
    """A scene backbone behind GridSample sees fewer points; the probe
    trains on the labelled points and scores every labelled validation
    point at full resolution, through ``inverse``."""
    from dbbd.apis.probe import (backbone_features, build_segmentor,
                                 run_probes)
    cfg = _cfg(demo_root, labelled_points=25)
    cfg.model.backbone = dict(type='PointNetSceneBackbone', in_channels=3,
                              hidden_dims=[8, 16], out_channels=16,
                              global_dims=[16])
    grid = dict(type='GridSample', grid_size=0.2, mode='test')
    for loader in ('train_dataloader', 'val_dataloader'):
        pipe = cfg[loader].dataset.pipeline
        cfg[loader].dataset.pipeline = [grid] + list(pipe)
    model = build_segmentor(cfg, None, seed=1)
    inputs = _scenes(cfg, 'val')[0]
    assert inputs['view1']['coord'].shape[0] < inputs['inverse'].shape[0]
    got = run_probes(cfg, dict(backbone=backbone_features(model)), seed=0)
    cm, y_tr, y_ev = _direct(cfg, backbone_features(model))
    np.testing.assert_array_equal(got['confusion']['backbone'], cm)
    assert got['n_labelled'] == y_tr.numel() == 4 * 25
    assert got['val_points'] == y_ev.numel() == int(cm.sum())


def test_training_points_are_a_seeded_uniform_subset(demo_root):
    """Capped at 50 of 4 x 30 labelled points: exactly the 50 with the
    smallest keys drawn per scene from (seed, scene_id), whatever the
    order; the class counts (majority) still count all 120."""
    from dbbd.apis.probe import collect_training_points, probe_dataset
    from dbbd.utils.rng import scene_rng
    cfg = _cfg(demo_root, labelled_points=30)

    def where(inputs):  # the point's coordinates identify it
        return inputs['view1']['coord']

    got = collect_training_points(cfg, dict(xyz=where), max_points=50,
                                  seed=4)
    assert got['n_labelled'] == 120 and got['labels'].numel() == 50
    assert int(got['class_counts'].sum()) == 120
    keys, coords = [], []
    for inputs, info in zip(_scenes(cfg, 'train'),
                            probe_dataset(cfg, 'train').data_list):
        y = inputs['segment']
        keys.append(scene_rng(4, info['scene_id']).random(int(
            (y >= 0).sum())))
        coords.append(inputs['view1']['coord'][y >= 0])
    keys, coords = np.concatenate(keys), torch.cat(coords)
    want = coords[torch.from_numpy(np.argsort(keys, kind='stable')[:50])]
    assert torch.equal(got['features']['xyz'], want)
    again = collect_training_points(cfg, dict(xyz=where), max_points=50,
                                    seed=4)
    assert torch.equal(again['features']['xyz'], want)
    other = collect_training_points(cfg, dict(xyz=where), max_points=50,
                                    seed=5)
    assert not torch.equal(other['features']['xyz'], want)


def test_untrained_backbone_is_seeded_and_pretrained_loads(demo_root,
                                                           tmp_path):
    from dbbd.apis.probe import build_segmentor
    from dbbd.engine.pretrained import PretrainedLoadError
    cfg = _cfg(demo_root)
    state = torch.random.get_rng_state()
    a = build_segmentor(cfg, None, seed=3).backbone.state_dict()
    assert torch.equal(torch.random.get_rng_state(), state)
    b = build_segmentor(cfg, None, seed=3).backbone.state_dict()
    c = build_segmentor(cfg, None, seed=4).backbone.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    # pretrained= through the segmentor's own loading
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict={
        f'backbone.{k}': v + 1 for k, v in a.items()}), path)
    loaded = build_segmentor(cfg, path, seed=3).backbone.state_dict()
    assert all(torch.equal(loaded[k], a[k] + 1) for k in a)
    torch.save(dict(state_dict={'backbone.x': torch.zeros(1)}), path)
    with pytest.raises(PretrainedLoadError, match='pretrained=') as err:
        build_segmentor(cfg, path)
    assert '\n' not in str(err.value)


def test_scores_are_those_of_seg_metric():
    from dbbd.apis.probe import scores_from_confusion
    from dbbd.evaluation import SegMetric
    from dbbd.evaluation.metrics.seg_metric import confusion_matrix
    g = torch.Generator().manual_seed(0)
    gt = torch.randint(-1, 5, (500, ), generator=g)
    pred = torch.randint(0, 7, (500, ), generator=g)
    metric = SegMetric(num_classes=8)
    metric.process({}, [dict(scene_id='a', pred=pred, segment=gt)])
    want = metric.compute_metrics(metric.results)
    got = scores_from_confusion(confusion_matrix(pred, gt, 8))
    for k in ('mIoU', 'mAcc', 'allAcc'):
        assert got[k] == pytest.approx(want[k])
    assert got['class_iou']['class 7'] is None  # in neither
    assert got['class_iou']['class 6'] == 0.0  # only predicted
