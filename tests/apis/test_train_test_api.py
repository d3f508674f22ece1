"""``dbbd.apis.train`` and ``dbbd.apis.test`` in one process: a problem is a
``CommandError`` of one line (the tools print it and exit 1)."""
import os.path as osp

import pytest

from dbbd.apis.errors import CommandError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO = osp.join(REPO, 'configs', 'dbbd', 'dbbd_small_demo.py')


def test_a_misspelt_config_names_the_closest():
    from dbbd.apis.train import build_config
    with pytest.raises(CommandError) as info:
        build_config(DEMO.replace('small_demo', 'smal_demo'))
    assert str(info.value).startswith(
        f'config file {DEMO.replace("small_demo", "smal_demo")} does not '
        f'exist; did you mean {DEMO}')


def test_the_command_line_reaches_the_config(tmp_path):
    from dbbd.apis.train import build_config, set_validation
    cfg = build_config(DEMO, work_dir=str(tmp_path),
                       cfg_options={'train_cfg.max_epochs': 3})
    assert cfg.work_dir == str(tmp_path) and cfg.train_cfg.max_epochs == 3
    assert build_config(DEMO).work_dir == osp.join('work_dirs',
                                                   'dbbd_small_demo')
    with pytest.raises(CommandError, match='exclude each other'):
        set_validation(cfg, '', resume='auto')
    set_validation(cfg, '')
    assert cfg.load_from is None and cfg.resume is False


def test_an_output_folder_under_a_file_is_refused(tmp_path):
    from dbbd.apis.test import check_output_dir
    (tmp_path / 'f').write_text('')
    with pytest.raises(CommandError) as info:
        check_output_dir('--out', str(tmp_path / 'f' / 'preds'))
    assert str(info.value) == (
        f'--out {tmp_path / "f" / "preds"}: {tmp_path / "f"} is a file, so '
        'no folder can be made under it; give another folder')
    check_output_dir('--out', str(tmp_path / 'new' / 'preds'))
    assert not (tmp_path / 'new').exists()


def test_exit_on_error_prints_one_line(capsys):
    from dbbd.apis.errors import exit_on_error
    with pytest.raises(SystemExit) as info:
        with exit_on_error():
            raise CommandError('what is wrong; what to do')
    assert info.value.code == 1
    assert capsys.readouterr().err == 'error: what is wrong; what to do\n'
