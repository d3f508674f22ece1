"""``tools/test.py`` stops in one line, before anything runs, on output
folders it cannot write; run in this process."""
import os

import pytest

from tiny import SEG_DEMO


def run_main(argv, capsys):
    from tools.test import main
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize('option', ['--out', '--show-dir'])
def test_output_folder_that_is_a_file_is_one_line(tmp_path, capsys, option):
    afile = tmp_path / 'preds'
    afile.write_text('not a folder')
    ckpt = str(tmp_path / 'any.pth')  # never read: the check comes first
    code, err = run_main([SEG_DEMO['ft'], ckpt, option, str(afile)], capsys)
    assert (code, err) == (1, [
        f'error: {option} {afile}: is a file, not a folder; give a folder '
        '(it is created when missing)'])
    under = afile / 'sub' / 'deeper'
    code, err = run_main([SEG_DEMO['ft'], ckpt, option, str(under)], capsys)
    assert (code, err) == (1, [
        f'error: {option} {under}: {afile} is a file, so no folder can be '
        'made under it; give another folder'])
    assert afile.read_text() == 'not a folder'
    assert sorted(os.listdir(tmp_path)) == ['preds']


def test_unwritable_output_folder_is_one_line(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip('root writes anywhere')
    locked = tmp_path / 'locked'
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, err = run_main([SEG_DEMO['ft'], str(tmp_path / 'any.pth'),
                              '--out', str(locked / 'preds')], capsys)
    finally:
        locked.chmod(0o700)
    assert (code, err) == (1, [
        f'error: --out {locked / "preds"}: cannot create it, {locked} is not '
        'writable; give another folder'])


def test_tta_is_confirmed_in_the_log(demo_root, tmp_path, capsys):
    """``--tta``: one log line says how the scenes are scored."""
    import copy

    import torch

    from dbbd.registry import MODELS
    from tiny import TINY_SEG_MODEL, cfg_options, tiny_seg_cfg
    from tools.test import main
    cfg = tiny_seg_cfg(demo_root, tmp_path / 'cfg')
    model = MODELS.build(copy.deepcopy(cfg.model))
    ckpt = str(tmp_path / 'seg.pth')
    torch.save(dict(meta=dict(epoch=1), state_dict=model.state_dict()), ckpt)
    main([SEG_DEMO['ft'], ckpt, '--work-dir', str(tmp_path / 'test'),
          '--tta', '--cfg-options', f'data_root={demo_root}',
          'pretrained=None', *cfg_options(TINY_SEG_MODEL)])
    out = capsys.readouterr().out
    lines = [ln for ln in out.splitlines() if '--tta:' in ln]
    assert len(lines) == 1, lines
    assert lines[0].endswith(
        '--tta: each scene scored as the mean of the logits of 4 views, '
        'turned by 0, 90, 180, 270 degrees about z (the config\'s '
        'tta_pipeline)')
