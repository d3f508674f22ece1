"""tools/export_encoder.py and tools/vis_features.py on a checkpoint of a
real (tiny, one-epoch) training run."""
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tests', 'evaluation'))
from eval_helpers import build_runner, one_thread, tiny_cfg  # noqa: E402


@pytest.fixture(scope='module')
def trained_ckpt(demo_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('export')
    cfg = tiny_cfg(demo_root, work, max_epochs=1)
    with one_thread():
        runner = build_runner(cfg)
        runner.train()
    cfg_path = str(work / 'tiny_config.py')
    cfg.dump(cfg_path)
    return runner, str(work / 'epoch_1.pth'), cfg_path


def val_batch(runner):
    batch = next(iter(runner.val_dataloader))
    return runner.model.data_preprocessor(batch, False)['inputs']


def test_export_then_reload_gives_identical_features(trained_ckpt, tmp_path):
    from dbbd.engine import load_exported_encoder
    from tools.export_encoder import main
    runner, ckpt, _ = trained_ckpt
    out = str(tmp_path / 'encoder.pth')
    main([ckpt, '--out', out])

    payload = torch.load(out, weights_only=True)  # plain data only
    assert payload['format'] == 'dbbd-encoder'
    assert 'optimizer' not in payload and 'message_hub' not in payload
    keys = set(payload['state_dict'])
    assert {k.split('.')[0] for k in keys} == {
        'input_proj', 'context_proj', 'propagator', 'encoder', 'aggregator'}
    # exactly the backbone, each tensor equal to the trained one
    backbone = runner.model.backbone.state_dict()
    assert keys == set(backbone)
    assert all(torch.equal(payload['state_dict'][k], backbone[k].cpu())
               for k in keys)
    assert payload['out_channels'] == 16 and payload['in_channels'] == 3
    assert payload['backbone_cfg']['type'] == 'DBBDTreeBackbone'

    model = load_exported_encoder(out)
    assert not model.training
    inputs = val_batch(runner)
    runner.model.eval()
    with torch.no_grad():
        want = runner.model(inputs, mode='tensor')
        got = model(inputs, mode='tensor')
    assert torch.equal(got['point_feat'], want['point_feat'])
    for a, b in zip(got['region_feat'], want['region_feat']):
        assert torch.equal(a, b)


def test_exported_weights_load_into_a_users_own_module(trained_ckpt,
                                                        tmp_path):
    from dbbd.engine.export import export_encoder
    from dbbd.registry import MODELS
    runner, ckpt, cfg_path = trained_ckpt
    payload = export_encoder(ckpt, str(tmp_path / 'enc.pth'),
                             config=cfg_path)
    assert payload['feat_keys'] == ['normal'] and payload['max_depth'] == 2
    sd = torch.load(str(tmp_path / 'enc.pth'),
                    weights_only=True)['state_dict']
    # e.g. only the point encoder, under its own name
    cfg = payload['backbone_cfg']
    encoder = MODELS.build(dict(cfg['encoder'],
                                in_channels=cfg['hidden_channels']))
    encoder.load_state_dict({k[len('encoder.'):]: v for k, v in sd.items()
                             if k.startswith('encoder.')})  # strict
    assert torch.equal(encoder.state_dict()[next(iter(
        encoder.state_dict()))], next(v for k, v in sd.items()
                                      if k.startswith('encoder.')))


def test_vis_features_writes_a_png(trained_ckpt, demo_root, tmp_path):
    from matplotlib import image as mpimg

    from tools.export_encoder import main as export_main
    from tools.vis_features import main as vis_main
    runner, ckpt, cfg_path = trained_ckpt
    scene = osp.join(demo_root, 'val', 'scene0004_00')
    png = str(tmp_path / 'features.png')
    res = subprocess.run(
        [sys.executable, osp.join(REPO, 'tools', 'vis_features.py'),
         cfg_path, ckpt, '--scene', scene, '--out', png, '--size', '256'],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
    assert res.returncode == 0, res.stderr[-2000:]
    img = mpimg.imread(png)
    assert img.shape[1] == 256 and img.shape[2] in (3, 4)
    assert len(np.unique(img[..., :3].reshape(-1, 3), axis=0)) > 20

    # the exported encoder draws the same picture
    enc = str(tmp_path / 'enc.pth')
    export_main([ckpt, '--out', enc])
    png2 = str(tmp_path / 'features_enc.png')
    vis_main([cfg_path, enc, '--scene', scene, '--out', png2,
              '--size', '256'])
    np.testing.assert_array_equal(mpimg.imread(png2), img)


def test_export_refuses_a_checkpoint_without_model_config(tmp_path):
    from tools.export_encoder import main
    bad = str(tmp_path / 'bare.pth')
    torch.save(dict(state_dict={'encoder.w': torch.zeros(1)}), bad)
    with pytest.raises(SystemExit) as e:
        main([bad, '--out', str(tmp_path / 'x.pth')])
    assert e.value.code == 1


def test_readme_exported_encoder_snippet_runs_as_written(trained_ckpt,
                                                         demo_root,
                                                         tmp_path):
    """The two Python snippets of docs/evaluation.md for an exported
    encoder (back into DBBD; its point encoder into your own model), run as
    written, each in its own namespace, in a folder with its encoder.pth and
    data/dbbd_demo."""
    from doc_snippets import snippet

    from tools.export_encoder import main
    runner, ckpt, _ = trained_ckpt
    (tmp_path / 'exported.py').write_text(snippet('exported-encoder'))
    (tmp_path / 'own_model.py').write_text(snippet('encoder-into-own-model'))
    (tmp_path / 'data').mkdir()
    os.symlink(demo_root, tmp_path / 'data' / 'dbbd_demo')
    main([ckpt, '--out', str(tmp_path / 'encoder.pth')])
    driver = ('import runpy; runpy.run_path("exported.py"); '
              'own = runpy.run_path("own_model.py"); '
              'print(type(own["encoder"]).__name__)')
    res = subprocess.run([sys.executable, '-c', driver], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=REPO,
                                  OMP_NUM_THREADS='1'))
    assert res.returncode == 0, res.stderr[-2000:]
    printed = res.stdout.strip().splitlines()
    assert printed[0].startswith('torch.Size([3000, 16])')
    # the point encoder the checkpoint was trained with, its weights loaded
    # (load_state_dict is strict: a missing or extra key would have raised)
    assert printed[-1] == type(runner.model.backbone.encoder).__name__


def test_outputs_default_to_the_checkpoints_work_dir(trained_ckpt, demo_root,
                                                     tmp_path, monkeypatch,
                                                     capsys):
    """Without --out both tools write beside the checkpoint (its work dir),
    never into the current folder."""
    import shutil

    from matplotlib import image as mpimg

    from tools.export_encoder import main as export_main
    from tools.vis_features import main as vis_main
    _, ckpt, cfg_path = trained_ckpt
    work = tmp_path / 'work'
    work.mkdir()
    mine = str(work / 'epoch_1.pth')
    shutil.copy(ckpt, mine)
    here = tmp_path / 'here'
    here.mkdir()
    monkeypatch.chdir(here)
    export_main([mine])
    enc = work / 'epoch_1_encoder.pth'
    assert torch.load(str(enc), weights_only=True)['format'] == \
        'dbbd-encoder'
    scene = osp.join(demo_root, 'val', 'scene0004_00')
    vis_main([cfg_path, mine, '--scene', scene, '--size', '64'])
    png = work / 'epoch_1_scene0004_00_features.png'
    assert mpimg.imread(str(png)).shape[1] == 64
    assert os.listdir(here) == []
    out = capsys.readouterr().out
    assert f'wrote {enc}:' in out and f'wrote {png} ' in out
    # never onto the checkpoint itself
    with pytest.raises(SystemExit) as e:
        export_main([mine, '--out', mine])
    assert e.value.code == 1
    assert capsys.readouterr().err.strip() == (
        f'error: --out {mine} is the checkpoint itself; give another file')
