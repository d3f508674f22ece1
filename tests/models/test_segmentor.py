"""PointSegmentor: frozen linear probe, pretrained= loading (and its loud
failures), full-resolution prediction after grid sampling, test-time
rotations."""
import copy
import logging

import numpy as np
import pytest
import torch

from tiny import build_runner, tiny_cfg, tiny_seg_cfg


def _build(cfg_model):
    import dbbd.models  # noqa: F401  (registers the models)
    from dbbd.registry import MODELS
    return MODELS.build(copy.deepcopy(cfg_model))


@pytest.fixture(scope='module')
def pretrain_ckpt(demo_root, tmp_path_factory):
    """A DBBD (tiny) checkpoint as SafeCheckpointHook writes one (state
    dict of a DDP-wrapped model, meta with the model config), and the
    state dict it holds."""
    from dbbd.engine.hooks.checkpoint_hook import to_plain
    cfg = tiny_cfg(demo_root, tmp_path_factory.mktemp('pre'))
    torch.manual_seed(1)
    model = _build(cfg.model)
    state = {f'module.{k}': v for k, v in model.state_dict().items()}
    path = str(tmp_path_factory.mktemp('ckpt') / 'epoch_1.pth')
    torch.save(dict(meta=dict(epoch=1, model_cfg=to_plain(cfg.model)),
                    state_dict=state), path)
    return path, model.state_dict()


def _segmentor(demo_root, tmp_path, pretrained=None, protocol='ft'):
    cfg = tiny_seg_cfg(demo_root, tmp_path, protocol, pretrained=pretrained)
    return _build(cfg.model), cfg


def _loaded_exactly(seg, source):
    """Every backbone tensor equals the source's ``backbone.`` entry, and
    there is no other."""
    want = {k[len('backbone.'):]: v for k, v in source.items()
            if k.startswith('backbone.')}
    got = seg.backbone.state_dict()
    assert set(got) == set(want)
    return all(torch.equal(got[k], want[k]) for k in want)


class _Lines(logging.Handler):
    """The messages of the current mmengine logger while it is attached."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    def __enter__(self):
        from mmengine.logging import MMLogger
        self.logger = MMLogger.get_current_instance()
        self.logger.addHandler(self)
        return self.lines

    def __exit__(self, *exc):
        self.logger.removeHandler(self)


def test_pretrained_from_training_checkpoint_and_export(
        pretrain_ckpt, demo_root, tmp_path):
    from dbbd.engine.export import export_encoder
    path, source = pretrain_ckpt
    seg, _ = _segmentor(demo_root, tmp_path, path)
    assert not _loaded_exactly(seg, source)  # random before init_weights
    head = copy.deepcopy(seg.head.state_dict())
    with _Lines() as lines:
        seg.init_weights()
    assert _loaded_exactly(seg, source)
    assert all(torch.equal(v, head[k])
               for k, v in seg.head.state_dict().items())  # head untouched
    n = len([k for k in source if k.startswith('backbone.')])
    line = [ln for ln in lines if ln.startswith('pretrained:')]
    assert len(line) == 1 and f'loaded {n} backbone tensors from {path}' \
        in line[0] and line[0].endswith('starting fresh: head')

    export = str(tmp_path / 'encoder.pth')
    export_encoder(path, export)
    seg2, _ = _segmentor(demo_root, tmp_path, export)
    seg2.init_weights()
    assert _loaded_exactly(seg2, source)


def _one_line_error(fn, match):
    from dbbd.engine.pretrained import PretrainedLoadError
    with pytest.raises(PretrainedLoadError, match=match) as err:
        fn()
    assert '\n' not in str(err.value)
    return str(err.value)


def test_pretrained_of_another_size_or_without_backbone_is_loud(
        pretrain_ckpt, demo_root, tmp_path):
    from dbbd.engine.pretrained import load_pretrained_backbone
    path, source = pretrain_ckpt
    # a backbone of other widths (as a small-mode checkpoint into a
    # full-size model): nothing loaded, the first offending key named with
    # both shapes
    wide = tiny_seg_cfg(demo_root, tmp_path, pretrained=path)
    wide.model.backbone.encoder.hidden_dims = [8, 24]
    seg = _build(wide.model)
    before = copy.deepcopy(seg.backbone.state_dict())
    msg = _one_line_error(seg.init_weights, 'another shape')
    ours = seg.backbone.state_dict()
    first = next(k for k in ours if source[f'backbone.{k}'].shape !=
                 ours[k].shape)
    shape = lambda t: str(tuple(t.shape))  # noqa: E731
    assert (f'{first}: file {shape(source["backbone." + first])}, model '
            f'{shape(ours[first])}') in msg
    assert all(torch.equal(v, before[k]) for k, v in ours.items())

    # no backbone tensor in the file at all
    heads = str(tmp_path / 'heads.pth')
    torch.save(dict(state_dict={k: v for k, v in source.items()
                                if not k.startswith('backbone.')}), heads)
    _one_line_error(lambda: load_pretrained_backbone(seg.backbone, heads),
                    'none of its .* tensors belongs to a backbone')
    # backbone tensors, but none the model has (another backbone)
    other = str(tmp_path / 'other.pth')
    torch.save(dict(state_dict={'backbone.stem.weight': torch.zeros(2)}),
               other)
    _one_line_error(lambda: load_pretrained_backbone(seg.backbone, other),
                    'no backbone tensor matches')
    _one_line_error(lambda: load_pretrained_backbone(
        seg.backbone, str(tmp_path / 'absent.pth')), 'no such file')


def test_linear_probe_epoch_keeps_the_backbone_bit_identical(demo_root,
                                                              tmp_path):
    cfg = tiny_seg_cfg(demo_root, tmp_path, 'lin')
    runner = build_runner(cfg)
    model = runner.model
    backbone = copy.deepcopy(model.backbone.state_dict())
    head = copy.deepcopy(model.head.state_dict())
    runner.train()
    model.train()  # as in a training step (validation left it in eval)
    assert not model.backbone.training and model.head.training
    assert not any(p.requires_grad for p in model.backbone.parameters())
    after = model.backbone.state_dict()
    assert all(torch.equal(after[k], v) for k, v in backbone.items())
    assert not torch.equal(model.head.state_dict()['cls.weight'],
                           head['cls.weight'])


def _val_dataset(demo_root, pipeline_head, views=1, extra=(),
                 center=True):
    from dbbd.datasets import SegDataset
    shift = [dict(type='CenterShift')] if center else []
    return SegDataset(
        demo_root, split='val', pipeline=list(pipeline_head) + [
            dict(type='MultiView', num_views=views,
                 transforms=shift + list(extra)),
            dict(type='PackDBBDInputs', feat_keys=('normal', ))])


def _voxel_keys(coord, lo, size):
    return np.floor((np.asarray(coord, np.float64) - lo) / size).astype(
        np.int64)


def test_grid_sampled_prediction_counts_every_point_once(demo_root):
    from dbbd.datasets import dbbd_collate
    from dbbd.datasets.scene_io import load_scene
    from dbbd.evaluation import SegMetric
    from dbbd.models.segmentors import PointSegmentor
    g = 0.25
    # no CenterShift: the network sees the kept points' own coordinates
    ds = _val_dataset(demo_root, [dict(type='GridSample', grid_size=g,
                                       mode='test')], center=False)
    batch = dbbd_collate([ds[0], ds[1]])
    # a scene backbone: PointNet over the whole (grid-sampled) scene;
    # seed 3: its random predictions vary from point to point (checked
    # below), so a wrong mapping shows
    torch.manual_seed(3)
    model = PointSegmentor(
        backbone=dict(type='PointNetSceneBackbone', in_channels=3,
                      hidden_dims=[8, 16], out_channels=16,
                      global_dims=[16]),
        head=dict(type='LinearSegHead'), num_classes=20)
    assert not model.needs_tree
    model.eval()
    inputs = model.data_preprocessor(batch, False)['inputs']
    out = model(inputs, batch['data_samples'], mode='predict')

    scenes = [load_scene(d['scene_dir']) for d in ds.data_list[:2]]
    offset = inputs['offset'].tolist()
    coarse = model(inputs, mode='tensor').argmax(1)
    assert torch.bincount(coarse).max() < 0.6 * coarse.numel()
    for b, (res, scene) in enumerate(zip(out, scenes)):
        full = np.asarray(scene['coord'])
        n = full.shape[0]
        kept = inputs['view1']['coord'][offset[b]:offset[b + 1]].numpy()
        assert kept.shape[0] < n  # the network saw fewer points
        assert res['pred'].shape == (n, )
        assert torch.equal(res['segment'], torch.from_numpy(
            scene['segment'].astype(np.int64)))
        # each point gets the prediction of the one kept point of its
        # voxel, found here from the coordinates alone
        lo = full.min(0).astype(np.float64)
        keys = np.concatenate([_voxel_keys(kept, lo, g),
                               _voxel_keys(full, lo, g)])
        _, ids = np.unique(keys, axis=0, return_inverse=True)
        ids = ids.reshape(-1)
        row = np.full(ids.max() + 1, -1)
        row[ids[:kept.shape[0]]] = np.arange(kept.shape[0])
        assert len(set(ids[:kept.shape[0]])) == kept.shape[0]  # 1 / voxel
        rows = row[ids[kept.shape[0]:]]
        assert (rows >= 0).all()
        want = coarse[offset[b]:offset[b + 1]][torch.from_numpy(rows)]
        assert torch.equal(res['pred'], want)
    metric = SegMetric(num_classes=20)
    metric.process(batch, out)
    labelled = sum(int((s['segment'] >= 0).sum()) for s in scenes)
    assert int(sum(r['cm'].sum() for r in metric.results)) == labelled


def test_tree_backbone_refuses_a_grid_sampled_batch(demo_root, tmp_path):
    from dbbd.datasets import dbbd_collate
    from dbbd.utils.config_check import ConfigError
    ds = _val_dataset(demo_root, [dict(type='GridSample', grid_size=0.25,
                                       mode='test')])
    seg, _ = _segmentor(demo_root, tmp_path)
    inputs = dbbd_collate([ds[0]])['inputs']
    with pytest.raises(ConfigError, match='remove GridSample'):
        seg(inputs, mode='tensor')


def test_tta_averages_the_logits_of_four_rotations(demo_root, tmp_path):
    from dbbd.datasets import dbbd_collate
    seg, _ = _segmentor(demo_root, tmp_path)
    seg.eval()
    angles = (0, 90, 180, 270)
    tta = _val_dataset(demo_root, [], views=4,
                       extra=[dict(type='ViewRotateZ', angles=angles)])
    sample = tta[0]
    v1, v2 = sample['view1'], sample['view2']
    # view 2 is view 1 turned by 90 degrees: (x, y) -> (-y, x), normals too
    rot = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]], np.float32)
    np.testing.assert_allclose(v2['coord'], v1['coord'] @ rot.T, atol=1e-5)
    np.testing.assert_allclose(v2['feat'], v1['feat'] @ rot.T, atol=1e-5)
    inputs = dbbd_collate([sample])['inputs']
    with torch.no_grad():
        got = seg(inputs, mode='predict')[0]['pred']
        mean = sum(seg.logits(inputs, f'view{i + 1}') for i in range(4)) / 4
    assert torch.equal(got, mean.argmax(1))


TINY_SPUNET = dict(type='SpUNet', in_channels=3, base_channels=8,
                   channels=[8, 16, 16, 12], layers=[1, 1, 1, 1],
                   voxel_size=0.3)


@pytest.mark.parametrize('method', ['SceneContrast', 'DBBD'])
def test_spunet_pretraining_loads_into_a_spunet_segmentor(method, tmp_path):
    """A SceneContrast checkpoint (backbone = the SpUNet) and a DBBD one on
    SpUNet (backbone = the tree, its SpUNet under scene_backbone.) both
    give their SpUNet to a segmentor whose backbone is that SpUNet."""
    from dbbd.engine.pretrained import load_pretrained_backbone
    from model_helpers import small_cfg
    if method == 'SceneContrast':
        cfg = dict(type='SceneContrast', backbone=dict(TINY_SPUNET),
                   head=dict(type='ProjectionHead', out_channels=8))
        prefix = 'backbone.'
    else:
        cfg = small_cfg()
        cfg['backbone'].update(encoder=None,
                               scene_backbone=dict(TINY_SPUNET))
        prefix = 'backbone.scene_backbone.'
    torch.manual_seed(3)
    pre = _build(cfg)
    path = str(tmp_path / 'epoch_1.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict=pre.state_dict()), path)
    seg = _build(dict(type='PointSegmentor', backbone=dict(TINY_SPUNET),
                      head=dict(type='LinearSegHead'), num_classes=20))
    n = load_pretrained_backbone(seg.backbone, path, fresh=['head'])
    want = {k[len(prefix):]: v for k, v in pre.state_dict().items()
            if k.startswith(prefix)}
    got = seg.backbone.state_dict()
    assert n == len(got) == len(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_tree_backbone_names_its_scene_backbone_weights():
    """``DBBDTreeBackbone.scene_backbone_weights`` (what ``pretrained=``
    reads for a SpUNet segmentor) is exactly the state dict of the module
    ``scene_backbone``, compared with that module, not with a prefix."""
    from model_helpers import small_cfg
    cfg = small_cfg()
    cfg['backbone'].update(encoder=None, scene_backbone=dict(TINY_SPUNET))
    tree = _build(cfg).backbone
    got = type(tree).scene_backbone_weights(tree.state_dict())
    want = tree.scene_backbone.state_dict()
    assert list(got) == list(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    plain = _build(small_cfg()).backbone
    assert type(plain).scene_backbone_weights(plain.state_dict()) == {}


def test_pretrained_is_checked_before_the_model_is_built(
        pretrain_ckpt, demo_root, tmp_path):
    """``check_pretrained_config``: the file read and matched to the
    config's model (built on the meta device) with the message the load
    would give; nothing else needed."""
    from dbbd.engine.pretrained import check_pretrained_config
    path, _ = pretrain_ckpt
    check_pretrained_config(tiny_seg_cfg(demo_root, tmp_path,
                                         pretrained=path))
    check_pretrained_config(tiny_seg_cfg(demo_root, tmp_path))  # scratch
    wide = tiny_seg_cfg(demo_root, tmp_path, pretrained=path)
    wide.model.backbone.encoder.hidden_dims = [8, 24]
    early = _one_line_error(lambda: check_pretrained_config(wide),
                            'another shape')
    late = _one_line_error(_build(wide.model).init_weights, 'another shape')
    assert early == late

    # not a checkpoint: named as pretrained=, no advice to resume
    junk = tmp_path / 'notes.pth'
    junk.write_bytes(b'not a checkpoint at all')
    cfg = tiny_seg_cfg(demo_root, tmp_path, pretrained=str(junk))
    msg = _one_line_error(lambda: check_pretrained_config(cfg),
                          f'^pretrained={junk}: not a readable checkpoint ')
    assert 'earlier checkpoint' not in msg
    assert msg.endswith('give a pre-training checkpoint or a file of '
                        'tools/export_encoder.py (pre-train again if this '
                        'one was damaged)')
    cfg = tiny_seg_cfg(demo_root, tmp_path, pretrained=str(tmp_path))
    _one_line_error(lambda: check_pretrained_config(cfg),
                    f'^pretrained={tmp_path}: is a folder, not a file')


@pytest.mark.parametrize('empty', ['', '  '])
def test_empty_pretrained_is_refused_not_scratch(demo_root, tmp_path, empty):
    from dbbd.models.segmentors.config import apply_top_level
    cfg = tiny_seg_cfg(demo_root, tmp_path)
    with pytest.raises(ValueError) as err:
        apply_top_level(cfg, pretrained=empty)
    assert str(err.value) == (
        f'pretrained={empty!r}: not a file path; give a pre-training '
        'checkpoint or a file of tools/export_encoder.py, or set '
        'pretrained=None to train from scratch')
    # set on the model directly, the load refuses it too
    cfg.model.pretrained = empty
    _one_line_error(_build(cfg.model).init_weights,
                    f'^pretrained={empty!r}: not a file path')
