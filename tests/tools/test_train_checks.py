"""``tools/train.py`` stops in one line, before the Runner is built (no
work dir written), on settings that cannot work; run in this process."""
import os
import os.path as osp

import pytest

from tiny import SEG_DEMO


def run_main(argv, capsys):
    """Exit code and the stderr lines of ``tools/train.py argv``."""
    from tools.train import main
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err.strip().splitlines()


def seg_args(demo_root, work, *options):
    return [SEG_DEMO['ft'], '--work-dir', str(work), '--cfg-options',
            f'data_root={demo_root}', 'pretrained=None', *options]


DS = 'train_dataloader.dataset'


def largest_labelled(root):
    from dbbd.datasets.scene_io import list_prepared, read_meta
    return max(sum(int(v) for k, v in read_meta(d)['class_counts'].items()
                   if k != '-1')
               for d in list_prepared(osp.join(root, 'train')))


@pytest.mark.parametrize('option, message', [
    (f'{DS}.labelled_points=0',
     f'{DS}: labelled_points must be a positive int or None, got 0'),
    (f'{DS}.labelled_fraction=1.5',
     f'{DS}: labelled_fraction must be a number in (0, 1], got 1.5'),
    (f'{DS}.labelled_scenes=2.5',
     f'{DS}: labelled_scenes must be a positive int or None, got 2.5'),
    # larger than the 4 training rooms: no silent clamp
    (f'{DS}.labelled_scenes=100',
     f'{DS}: labelled_scenes=100 but the split has 4 scene(s); set '
     'labelled_scenes to at most 4, or leave it unset to label every scene'),
    # every room has fewer labelled points: the option would change nothing
    (f'{DS}.labelled_points=100000',
     f'{DS}: labelled_points=100000 is at or above the labelled points of '
     'every scene (largest: {largest}), so every label would be kept; set a '
     "smaller labelled_points (ScanNet's benchmark: 20, 50, 100, 200), or "
     'leave it unset for all labels'),
    ('val_dataloader.dataset.labelled_points=10',
     'val_dataloader.dataset.labelled_points: got 10; label-efficient '
     'options apply to the training dataset only (validation and test '
     f'score every labelled point); set {DS}.labelled_points instead and '
     'remove val_dataloader.dataset.labelled_points'),
])
def test_label_efficient_mistakes_are_one_line(demo_root, tmp_path, capsys,
                                               option, message):
    work = tmp_path / 'work'
    if '{largest}' in message:
        message = message.format(largest=f'{largest_labelled(demo_root):,}')
    code, err = run_main(seg_args(demo_root, work, option), capsys)
    assert (code, err) == (1, [f'error: {message}'])
    assert not work.exists()


def test_label_efficient_both_fraction_and_count(demo_root, tmp_path,
                                                  capsys):
    work = tmp_path / 'work'
    code, err = run_main(seg_args(
        demo_root, work, f'{DS}.labelled_fraction=0.5',
        f'{DS}.labelled_scenes=2'), capsys)
    assert (code, err) == (1, [
        f'error: {DS}: set labelled_fraction or labelled_scenes, not both '
        '(got labelled_fraction=0.5 and labelled_scenes=2)'])
    assert not work.exists()


def test_pretrained_problems_are_one_line_before_the_runner(
        demo_root, tmp_path, capsys):
    """``pretrained=`` is read and matched with the other checks: its one
    line comes before the Runner prints or writes anything."""
    junk = tmp_path / 'notes.pth'
    junk.write_bytes(b'\x00' * 64)
    for value, start in [
            (str(junk), f'error: pretrained={junk}: not a readable '
             'checkpoint ('),
            (str(tmp_path / 'absent.pth'),
             f'error: pretrained={tmp_path / "absent.pth"}: no such file'),
            ('', "error: pretrained='': not a file path")]:
        work = tmp_path / 'work'
        argv = [SEG_DEMO['ft'], '--work-dir', str(work), '--cfg-options',
                f'data_root={demo_root}', f'pretrained={value}']
        code, err = run_main(argv, capsys)
        assert code == 1 and len(err) == 1, err
        assert err[0].startswith(start), err[0]
        assert not work.exists()


@pytest.mark.parametrize('option, message', [
    ('foo_bar=1',
     "--cfg-options foo_bar: no part of the config reads a top-level key "
     "'foo_bar'; a nested key needs its full path (e.g. "
     'train_cfg.max_epochs=10)'),
    ('pretrianed=x.pth',
     "--cfg-options pretrianed: no part of the config reads a top-level key "
     "'pretrianed'; did you mean 'pretrained'? a nested key needs its full "
     'path (e.g. train_cfg.max_epochs=10)'),
    ('data_rot=/data',
     "--cfg-options data_rot: no part of the config reads a top-level key "
     "'data_rot'; did you mean 'data_root'? a nested key needs its full "
     'path (e.g. train_cfg.max_epochs=10)'),
    # a variable of the file: already used, setting it changes nothing
    ('max_epochs=5',
     f'--cfg-options max_epochs: max_epochs is a variable of the config '
     f'file {SEG_DEMO["ft"]}, used when the file was read; setting it here '
     'changes nothing; set the key that holds it instead: '
     'train_cfg.max_epochs'),
])
def test_top_level_keys_nothing_reads_are_refused(demo_root, tmp_path,
                                                  capsys, option, message):
    work = tmp_path / 'work'
    code, err = run_main(seg_args(demo_root, work, option), capsys)
    assert (code, err) == (1, [f'error: {message}'])
    assert not work.exists()


def test_misspelt_top_level_key_in_a_config_file(tmp_path, capsys):
    cfg = tmp_path / 'mine.py'
    cfg.write_text(f"_base_ = ['{SEG_DEMO['ft']}']\n"
                   "pretrianed = 'work_dirs/x/epoch_1.pth'\n"
                   "my_width = 16  # a variable of its own: fine\n")
    code, err = run_main([str(cfg), '--work-dir', str(tmp_path / 'w')],
                         capsys)
    assert (code, err) == (1, [
        f"error: {cfg}: top-level key 'pretrianed' is read by nothing and "
        "is close to 'pretrained', which is; did you mean 'pretrained'? (a "
        'variable the file uses itself needs a name not this close to a '
        'key that is read)'])


class _FullDisk:
    """``open`` for writing under ``folder`` (except names in ``spare``)
    gives a file whose writes fail with ENOSPC, as on a full disk; the
    file itself is created, empty."""

    def __init__(self, folder, only=None):
        import builtins
        self.folder, self.only = str(folder), only
        self.real_open = builtins.open

    def __call__(self, file, mode='r', *args, **kwargs):
        f = self.real_open(file, mode, *args, **kwargs)
        name = os.fspath(file) if not isinstance(file, int) else ''
        hit = (isinstance(name, str) and
               osp.abspath(name).startswith(self.folder + os.sep) and
               any(m in mode for m in 'wax+') and
               (self.only is None or self.only(osp.basename(name))))
        return _Refusing(f) if hit else f


class _Refusing:
    def __init__(self, f):
        self._f = f

    def _full(self, *args, **kwargs):
        import errno
        raise OSError(errno.ENOSPC, 'No space left on device')

    write = flush = _full

    def close(self):
        self._f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __getattr__(self, name):
        return getattr(self._f, name)


def _drop_broken_log_files():
    import logging

    from mmengine.logging import MMLogger
    logger = MMLogger.get_current_instance()
    for h in list(logger.handlers):
        if isinstance(h, logging.FileHandler):
            logger.removeHandler(h)
            try:
                h.stream._f.close()
            except AttributeError:
                pass


@pytest.mark.parametrize('what', ['log', 'config copy'])
def test_disk_full_before_the_first_checkpoint_is_one_line(
        demo_root, tmp_path, capsys, monkeypatch, what):
    """The disk fills before any checkpoint: one line naming the file,
    no logging tracebacks, no truncated config copy, and no claim of
    previous checkpoints."""
    import builtins
    from tiny import DEMO, cfg_options
    work = tmp_path / 'work'
    only = (None if what == 'log' else
            lambda name: name.startswith('.dbbd_small_demo.py'))
    monkeypatch.setattr(builtins, 'open', _FullDisk(work, only))
    try:
        code, err = run_main([DEMO, '--work-dir', str(work), '--cfg-options',
                              f'data_root={demo_root}', *cfg_options(),
                              f'experiment_name=full_{what[:3]}_{os.getpid()}'
                              ], capsys)
    finally:
        monkeypatch.undo()
        _drop_broken_log_files()
    assert code == 1 and len(err) == 1, err
    assert err[0].startswith('error: no space left on the device while '
                             'writing ')
    assert err[0].endswith('free some space or give another --work-dir, '
                           'then run again (no checkpoint had been saved '
                           'yet)')
    assert 'intact' not in err[0]
    if what == 'log':
        assert osp.basename(err[0].split(' while writing ')[1].split()[0]
                            ).endswith('.log')
    else:
        assert f'writing {work / "dbbd_small_demo.py"} in the work dir' in \
            err[0]
        assert not (work / 'dbbd_small_demo.py').exists()
        assert not [n for n in os.listdir(work) if n.endswith('-tmp')]
    assert not [n for n in os.listdir(work) if n.endswith('.pth')]


def test_spunet_scene_of_one_voxel_is_one_line_naming_it(demo_root,
                                                         tmp_path, capsys):
    """DBBD on SpUNet, batches of one scene, a training scene inside a 4 mm
    cube (prepared with a warning): one line naming the scene, not
    BatchNorm's ValueError."""
    import numpy as np

    from dbbd.datasets.prepare import prepare_dataset
    from tiny import REPO
    src = tmp_path / 'src'
    src.mkdir()
    rng = np.random.default_rng(0)
    np.save(src / 'speck.npy', rng.random((500, 3)) * 0.004)
    data = tmp_path / 'data'
    summary = prepare_dataset(src, data, workers=0, max_depth=2,
                              min_points_to_split=32, progress=False,
                              log=lambda m: None)
    assert summary['warned'][0]['warnings'][0].startswith(
        'all points lie within 4 mm')
    os.symlink(osp.join(demo_root, 'val'), data / 'val')
    spunet = osp.join(REPO, 'configs', 'dbbd', 'dbbd_spunet_small_demo.py')
    code, err = run_main([
        spunet, '--work-dir', str(tmp_path / 'work'), '--cfg-options',
        f'data_root={data}', 'train_dataloader.batch_size=1',
        'train_dataloader.dataset.max_scenes=None',
        'model.backbone.scene_backbone.base_channels=8',
        'model.backbone.scene_backbone.channels=[8,16,16,8]',
        'model.backbone.scene_backbone.layers=[1,1,1,1]',
        'model.backbone.scene_backbone.voxel_size=0.1',
        f'experiment_name=speck_{os.getpid()}'], capsys)
    assert code == 1 and len(err) == 1, err[-5:]
    # the view's augmentation moves the points: the span is the view's
    assert err[0].startswith('error: SpUNet: scene speck (its points span ')
    assert ' fits in one ' in err[0] and 'BatchNorm needs more than one' \
        in err[0]


@pytest.mark.parametrize('verbose', [False, True],
                         ids=['quiet', 'verbose'])
def test_setup_dump_goes_to_the_log_file_unless_verbose(demo_root, tmp_path,
                                                        capsys, verbose):
    """By default the console shows one line where mmengine's set-up dump
    (environment, whole config, hook table: hundreds of lines) was; the
    log file in the work dir has the dump; --verbose prints it too."""
    import glob

    from tiny import DEMO, cfg_options
    from tools.train import main
    work = tmp_path / 'work'
    main([DEMO, '--work-dir', str(work), '--validate', *(
        ['--verbose'] if verbose else []), '--cfg-options',
        f'data_root={demo_root}', *cfg_options(),
        f'experiment_name=quiet_{verbose}_{os.getpid()}'])
    out = capsys.readouterr().out
    (log,) = glob.glob(str(work / '*' / '*.log'))
    text = open(log).read()
    dump = ('System environment:', 'Config:\n',
            'Hooks will be executed in the following order:')
    for part in dump:
        assert part in text
        assert (part in out) == verbose, part
    pointer = f'Environment, config and hook order: in {log} (--verbose'
    assert (pointer in out) != verbose
    assert 'Epoch(val) [0][1/1]' in out  # progress stays on the console
    if not verbose:
        assert len(out.splitlines()) < 60
