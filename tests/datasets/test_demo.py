"""The demo config generates synthetic rooms into its own folder only."""
import os

import pytest
from tiny import DEMO

from dbbd.datasets.dbbd_dataset import DataPreparationError, DBBDDataset
from dbbd.datasets.config_check import check_data_exists


def _demo_cfg():
    from mmengine.config import Config
    return Config.fromfile(DEMO)


def _dataset(cfg, loader='train_dataloader'):
    ds = cfg[loader].dataset.to_dict()
    ds.pop('type')
    return DBBDDataset(**ds)


@pytest.mark.parametrize('exists', [True, False])
def test_demo_never_fills_a_folder_you_name(tmp_path, exists):
    cfg = _demo_cfg()
    mine = tmp_path / 'my_data'
    if exists:
        mine.mkdir()  # an empty folder given as data_root
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = str(mine)
    # refused before the Runner starts (tools/train.py's data check) ...
    with pytest.raises(DataPreparationError) as e:
        check_data_exists(cfg)
    # ... and by the dataset itself
    with pytest.raises(DataPreparationError) as e2:
        _dataset(cfg)
    for msg in (str(e.value), str(e2.value)):
        assert '\n' not in msg
        assert f'data_root {mine} has no prepared train split' in msg
        assert 'only into its own folder data/dbbd_demo' in msg
        assert f'tools/create_data.py --src <your data> --out {mine}' in msg
    assert os.listdir(mine) == [] if exists else not mine.exists()


def test_demo_uses_your_prepared_data_and_fills_its_own_folder(
        demo_root, tmp_path, monkeypatch, capsys):
    cfg = _demo_cfg()
    cfg.train_dataloader.dataset.data_root = demo_root
    check_data_exists(cfg)
    assert len(_dataset(cfg)) == 4
    # its own folder (relative, as the config names it) is generated
    monkeypatch.chdir(tmp_path)
    cfg = _demo_cfg()
    cfg.val_dataloader.dataset.auto_prepare.update(
        num_train=1, num_val=2, num_points=1000, max_depth=2, workers=0)
    check_data_exists(cfg)
    assert len(_dataset(cfg, 'val_dataloader')) == 2
    assert sorted(os.listdir(tmp_path / 'data' / 'dbbd_demo' / 'val')) == [
        'scene0001_00', 'scene0002_00']
    assert 'DBBD demo: preparing 1 train + 2 val synthetic rooms' in \
        capsys.readouterr().err


def test_demo_never_adds_rooms_to_your_smaller_prepared_data(tmp_path):
    """A data root of yours with fewer prepared scenes than the demo
    makes: used as it is, no synthetic room added."""
    import numpy as np

    from dbbd.datasets.demo import prepare_configured_demo
    from dbbd.datasets.prepare import prepare_dataset
    src = tmp_path / 'src'
    src.mkdir()
    np.save(src / 'mine.npy', np.random.default_rng(0).random((300, 3)) * 3)
    data = tmp_path / 'data'
    prepare_dataset(src, data, workers=0, max_depth=2, min_points_to_split=32,
                    progress=False, log=lambda m: None)
    before = sorted(os.listdir(data))
    cfg = _demo_cfg()
    for loader in ('train_dataloader', 'val_dataloader'):
        cfg[loader].dataset.data_root = str(data)
    prepare_configured_demo(cfg)
    assert sorted(os.listdir(data)) == before
    assert os.listdir(data / 'train') == ['mine']
    with pytest.warns(UserWarning, match='max_scenes=4 is larger than the '
                      '1 scenes'):  # said, not silently clamped
        assert len(_dataset(cfg)) == 1
