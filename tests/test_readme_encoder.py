"""The examples of docs/extending.md ("Adding an encoder", "Adding a scene
backbone"), run as written: each module and config goes into a temporary
folder, and the real Runner trains with it.
"""
import sys

import torch
from doc_snippets import snippet
from tiny import DEMO, build_runner, tiny_cfg


def test_readme_encoder_example_trains(demo_root, tmp_path, monkeypatch):
    module = snippet('encoder-module')
    config = snippet('encoder-config')
    assert '@MODELS.register_module()' in module
    pkg = tmp_path / 'my_pkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'my_encoder.py').write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    # the page's config, with its base pointing at this checkout: the
    # demo, which a new user has data for
    config = config.replace("'../dbbd/dbbd_small_demo.py'", repr(DEMO))
    assert repr(DEMO) in config
    command = snippet('encoder-command')
    assert command.strip() == ('PYTHONPATH=. python tools/train.py '
                               'configs/my/dbbd_small_meanshift.py')
    cfg_file = tmp_path / 'dbbd_small_meanshift.py'
    cfg_file.write_text(config)

    from mmengine.config import Config
    user_cfg = Config.fromfile(str(cfg_file))  # runs custom_imports
    encoder = user_cfg.model.backbone.encoder
    assert encoder.type == 'MeanShiftEncoder'
    cfg = tiny_cfg(demo_root, tmp_path / 'work', max_epochs=1)
    cfg.model.backbone.encoder = encoder
    cfg.model.backbone.propagator.out_channels = encoder.out_channels
    runner = build_runner(cfg)
    assert type(runner.model.backbone.encoder).__name__ == 'MeanShiftEncoder'
    ow = runner.build_optim_wrapper(cfg.optim_wrapper)
    batch = next(iter(runner.train_dataloader))
    before = [p.clone() for p in runner.model.backbone.encoder.parameters()]
    runner.model.train()
    log_vars = runner.model.train_step(batch, ow)
    assert torch.isfinite(log_vars['loss'].detach())
    after = list(runner.model.backbone.encoder.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after))
    sys.modules.pop('my_pkg.my_encoder', None)
    sys.modules.pop('my_pkg', None)


def test_readme_scene_backbone_example_trains(demo_root, tmp_path,
                                              monkeypatch):
    module = snippet('scene-backbone-module')
    config = snippet('scene-backbone-config')
    command = snippet('scene-backbone-command')
    assert command.strip() == ('PYTHONPATH=. python tools/train.py '
                               'configs/my/dbbd_small_scenemean.py')
    pkg = tmp_path / 'my_pkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'my_scene_backbone.py').write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path))
    config = config.replace("'../dbbd/dbbd_small_demo.py'", repr(DEMO))
    assert repr(DEMO) in config
    (tmp_path / 'cfg.py').write_text(config)
    from mmengine.config import Config
    user = Config.fromfile(str(tmp_path / 'cfg.py'))  # runs custom_imports
    cfg = tiny_cfg(demo_root, tmp_path / 'work', max_epochs=1)
    cfg.model.backbone.scene_backbone = user.model.backbone.scene_backbone
    cfg.model.backbone.encoder = user.model.backbone.encoder
    runner = build_runner(cfg)
    sb = runner.model.backbone.scene_backbone
    assert type(sb).__name__ == 'SceneMeanBackbone'
    assert sb.in_channels == 3 and runner.model.backbone.encoder is None
    ow = runner.build_optim_wrapper(cfg.optim_wrapper)
    before = [p.clone() for p in sb.parameters()]
    runner.model.train()
    log_vars = runner.model.train_step(next(iter(runner.train_dataloader)),
                                       ow)
    assert torch.isfinite(torch.as_tensor(log_vars['loss']))
    assert all(not torch.equal(a, b) for a, b in zip(before, sb.parameters()))
    sys.modules.pop('my_pkg.my_scene_backbone', None)
    sys.modules.pop('my_pkg', None)
