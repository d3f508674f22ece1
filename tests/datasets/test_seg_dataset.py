"""SegDataset: label-efficient subsets are deterministic and exact; label
problems stop with one line naming the scene and the value."""
import os
import shutil

import numpy as np
import pytest

from dbbd.datasets import SegDataset, SegLabelError
from dbbd.datasets.scene_io import load_scene, read_meta, save_scene

PIPELINE = [
    dict(type='MultiView', num_views=1,
         transforms=[dict(type='RandomRotateZ')]),
    dict(type='PackDBBDInputs', feat_keys=('normal', )),
]


def dataset(root, **kw):
    return SegDataset(root, split='train', pipeline=PIPELINE, **kw)


def test_labelled_points_per_scene(demo_root):
    n = 50
    ds = dataset(demo_root, labelled_points=n, label_seed=3)
    again = dataset(demo_root, labelled_points=n, label_seed=3)
    other = dataset(demo_root, labelled_points=n, label_seed=4)
    for i in range(len(ds)):
        full = np.asarray(load_scene(ds.data_list[i]['scene_dir'])[
            'segment'], np.int64)
        seg = ds[(i, 0, 0)]['segment']
        kept = seg != -1
        assert kept.sum() == min(n, int((full != -1).sum()))
        assert np.array_equal(seg[kept], full[kept])  # the true labels
        # the same points in another epoch, another run; others by seed
        assert np.array_equal(ds[(i, 5, 1)]['segment'], seg)
        assert np.array_equal(again[i]['segment'], seg)
        assert not np.array_equal(other[i]['segment'], seg)


def test_labelled_scenes_fraction_and_count(demo_root):
    ids = [d['scene_id'] for d in dataset(demo_root).data_list]
    half = [d['scene_id'] for d in dataset(
        demo_root, labelled_fraction=0.5, label_seed=1).data_list]
    assert len(half) == 2 and set(half) <= set(ids)
    assert half == [d['scene_id'] for d in dataset(
        demo_root, labelled_fraction=0.5, label_seed=1).data_list]
    seeds = {tuple(d['scene_id'] for d in dataset(
        demo_root, labelled_scenes=1, label_seed=s).data_list)
        for s in range(8)}
    assert all(len(s) == 1 for s in seeds) and len(seeds) > 1
    with pytest.raises(ValueError, match='not both'):
        dataset(demo_root, labelled_fraction=0.5, labelled_scenes=1)
    with pytest.raises(ValueError, match='labelled_points'):
        dataset(demo_root, labelled_points=0)


def test_label_beyond_num_classes_names_scene_and_value(demo_root):
    metas = [(d['scene_id'], read_meta(d['scene_dir']))
             for d in dataset(demo_root).data_list]
    k = 10  # a num_classes some scene's labels exceed
    first = next((sid, min(int(c) for c in m['class_counts'] if int(c) >= k))
                 for sid, m in metas
                 if any(int(c) >= k for c in m['class_counts']))
    with pytest.raises(SegLabelError) as err:
        dataset(demo_root, num_classes=k)
    msg = str(err.value)
    assert '\n' not in msg
    assert f'scene {first[0]} ' in msg and f'has label {first[1]} ' in msg


def test_split_without_labels_stops(demo_root, tmp_path):
    src = dataset(demo_root).data_list[0]['scene_dir']
    scene = load_scene(src)
    out = tmp_path / 'root' / 'train' / 'scene_nolabels'
    os.makedirs(out.parent)
    save_scene(str(out), np.asarray(scene['coord'], np.float64),
               scene['normal'], scene['tree'])
    with pytest.raises(SegLabelError, match='scene_nolabels .* has no labels'):
        dataset(str(tmp_path / 'root'))
    assert len(dataset(str(tmp_path / 'root'), require_labels=False)) == 1
    shutil.rmtree(tmp_path / 'root')


# ---------------------------------------------------------------------------
# class_counts: what class_weight='auto' is computed from
# ---------------------------------------------------------------------------
def _segment_counts(scene_dirs, k=20):
    """Labelled points per class, read from segment.npy here."""
    total = np.zeros(k, np.int64)
    for d in scene_dirs:
        seg = np.asarray(load_scene(d)['segment'], np.int64)
        total += np.bincount(seg[seg >= 0], minlength=k)
    return total


def test_class_counts_of_the_labelled_scenes(demo_root):
    ds = dataset(demo_root)
    counts = ds.class_counts()
    assert counts.dtype == np.int64 and counts.shape == (20, )
    want = _segment_counts([d['scene_dir'] for d in ds.data_list])
    assert np.array_equal(counts, want) and counts.sum() > 0
    # a label-efficient subset of scenes counts those scenes only
    one = dataset(demo_root, labelled_scenes=1, label_seed=2)
    assert np.array_equal(one.class_counts(), _segment_counts(
        [d['scene_dir'] for d in one.data_list]))
    assert one.class_counts().sum() < counts.sum()


def test_class_counts_with_labelled_points_are_the_kept_points(demo_root):
    """Exactly the labels training reads: those of the samples the dataset
    serves (every epoch the same), 20 per scene."""
    ds = dataset(demo_root, labelled_points=20, label_seed=5)
    counts = ds.class_counts()
    served = np.zeros(20, np.int64)
    for i in range(len(ds)):
        seg = np.asarray(ds[(i, 3, 0)]['segment'], np.int64)
        served += np.bincount(seg[seg >= 0], minlength=20)
    assert counts.sum() == 20 * len(ds)
    assert np.array_equal(counts, served)
    assert not np.array_equal(
        counts, dataset(demo_root, labelled_points=20,
                        label_seed=6).class_counts())


def test_class_counts_without_meta_counts_read_the_labels(demo_root,
                                                          tmp_path):
    """A scene prepared before meta.json had class_counts: its
    segment.npy is counted instead."""
    import json
    root = tmp_path / 'old'
    shutil.copytree(os.path.join(demo_root, 'train'), root / 'train')
    for d in sorted((root / 'train').iterdir()):
        meta = json.loads((d / 'meta.json').read_text())
        meta.pop('class_counts')
        (d / 'meta.json').write_text(json.dumps(meta))
    assert np.array_equal(dataset(str(root)).class_counts(),
                          dataset(demo_root).class_counts())


def test_class_counts_through_dataset_wrappers(demo_root):
    from mmengine.dataset import ConcatDataset, RepeatDataset
    from torch.utils.data import Subset

    from dbbd.datasets.seg_dataset import dataset_class_counts
    from dbbd.utils.config_check import ConfigError
    a = dataset(demo_root)
    b = dataset(demo_root, labelled_points=20)
    assert np.array_equal(dataset_class_counts(ConcatDataset([a, b])),
                          a.class_counts() + b.class_counts())
    assert np.array_equal(dataset_class_counts(RepeatDataset(b, 3)),
                          3 * b.class_counts())
    with pytest.raises(ConfigError, match='a Subset cannot count') as err:
        dataset_class_counts(Subset(a, [0]))
    assert '\n' not in str(err.value)


def test_labelled_subset_ignores_the_order_of_the_scene_ids():
    from dbbd.datasets.seg_dataset import choose_labelled_scenes
    ids = [f'scene{i:04d}_00' for i in range(20)]
    # pinned: a change of the draw changes every labelled benchmark
    assert choose_labelled_scenes(ids, count=4, seed=0) == [
        'scene0002_00', 'scene0004_00', 'scene0006_00', 'scene0019_00']
    assert choose_labelled_scenes(ids, fraction=0.1, seed=3) == [
        'scene0012_00', 'scene0016_00']
    rng = np.random.default_rng(0)
    for seed in range(3):
        expected = choose_labelled_scenes(ids, count=5, seed=seed)
        for _ in range(5):
            shuffled = [ids[i] for i in rng.permutation(len(ids))]
            assert choose_labelled_scenes(shuffled, count=5,
                                          seed=seed) == expected


def test_label_efficient_setting_is_logged_in_one_line(demo_root,
                                                       monkeypatch):
    import mmengine.logging
    from dbbd.datasets.scene_io import read_meta
    logged = []
    monkeypatch.setattr(mmengine.logging, 'print_log',
                        lambda msg, **kw: logged.append(msg) if str(
                            msg).startswith('SegDataset') else None)
    ds = dataset(demo_root, labelled_scenes=2, labelled_points=50,
                 label_seed=1)
    kept = [d['scene_id'] for d in ds.data_list]
    labelled = [sum(v for k, v in read_meta(d['scene_dir'])[
        'class_counts'].items() if k != '-1') for d in ds.data_list]
    split = os.path.join(demo_root, 'train')
    assert logged == [ds.label_summary] == [
        f'SegDataset ({split}): label-efficient training: 2 of 4 scenes '
        f'labelled (labelled_scenes=2, label_seed=1): {kept[0]}, {kept[1]}; '
        f'labelled_points=50 (label_seed=1): {2 * 50:,} of '
        f'{sum(labelled):,} labelled points kept']
    # what is logged is what the samples hold
    assert sum(int((ds[i]['segment'] != -1).sum())
               for i in range(len(ds))) == 100
    logged.clear()
    assert dataset(demo_root).label_summary is None and logged == []


def test_impossible_label_efficient_settings_are_refused(demo_root):
    from dbbd.utils.config_check import ConfigError
    with pytest.raises(ConfigError, match=r'labelled_scenes=5 but the split '
                       r'has 4 scene\(s\)'):
        dataset(demo_root, labelled_scenes=5)
    with pytest.raises(ConfigError, match='labelled_points=10000 is at or '
                       'above the labelled points of every scene'):
        dataset(demo_root, labelled_points=10000)
    # all 4 scenes, as a count, is fine
    assert len(dataset(demo_root, labelled_scenes=4)) == 4
