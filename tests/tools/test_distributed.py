"""Two-process training on CPU (gloo): torchrun and Slurm launchers.

Each rank records what it saw through a test-only hook (written into
tmp_path, loaded with ``custom_imports``): the scene ids, the regions per
level of its batches, its local loss, the logged (reduced) loss and its
``torch.save`` calls. The training scenes have trees of different depths so
that the two ranks' batches have different numbers of levels every step.
"""
import copy
import glob
import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from tiny import DEMO, REPO, TRAIN, cfg_options

DIST_TRAIN = osp.join(REPO, 'tools', 'dist_train.sh')
TIMEOUT = 240

TINY = cfg_options()

PROBE = r'''
"""Test-only hook: what each rank saw, one JSON line per iteration."""
import json
import os.path as osp

import torch
from mmengine.dist import get_rank, get_world_size
from mmengine.hooks import Hook
from mmengine.registry import HOOKS

_SAVES = []
_real_save = torch.save


def _counting_save(obj, f, *args, **kwargs):
    import traceback
    caller = traceback.extract_stack()[-2]
    # torch pickles tensors sent between ranks through torch.save too
    if not caller.filename.endswith(osp.join('torch', 'storage.py')):
        _SAVES.append(dict(
            file=f if isinstance(f, str) else type(f).__name__,
            caller=f'{caller.filename}:{caller.lineno}'))
    return _real_save(obj, f, *args, **kwargs)


@HOOKS.register_module()
class RankProbeHook(Hook):

    def before_train(self, runner):
        torch.save = _counting_save
        self._local = None
        model = getattr(runner.model, 'module', runner.model)
        model.register_forward_hook(self._grab)

    def _grab(self, module, args, output):
        if isinstance(output, dict) and 'loss_region' in output:
            self._local = {k: float(v.detach()) for k, v in output.items()}

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        inputs = data_batch['inputs']
        self._cur = dict(
            epoch=runner.epoch, iter=runner.iter,
            scenes=[s['scene_id'] for s in data_batch['data_samples']],
            regions_per_level=inputs['region_offset'][:, -1].tolist())

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        rec = dict(self._cur, rank=get_rank(), world_size=get_world_size(),
                   local=self._local,
                   logged={k: float(v) for k, v in outputs.items()})
        self._write(runner, rec)

    def after_run(self, runner):
        self._write(runner, dict(torch_save_calls=list(_SAVES),
                                 rank=get_rank()))

    @staticmethod
    def _write(runner, rec):
        path = osp.join(runner.work_dir, f'scenes_rank{get_rank()}.txt')
        with open(path, 'a') as f:
            f.write(json.dumps(rec) + '\n')
'''


# ----------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------
def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def make_mixed_depth_data(root, train_depths, val_depths=(2, 1),
                          num_points=1500):
    """Synthetic rooms whose region trees have the given depths."""
    from dbbd.datasets.region_tree import build_region_tree
    from dbbd.datasets.scene_io import save_scene
    from dbbd.datasets.synthetic import make_room
    for split, depths in (('train', train_depths), ('val', val_depths)):
        for i, depth in enumerate(depths):
            room = make_room(num_points=num_points,
                             seed=(11, i, split == 'val'))
            tree, order = build_region_tree(room['coord'], branching=4,
                                            max_depth=depth,
                                            min_points_to_split=64, seed=0)
            assert tree.num_levels == depth + 1
            save_scene(osp.join(root, split, f'scene{i:04d}_00'),
                       room['coord'][order], room['normal'][order], tree,
                       color=room['color'][order],
                       segment=room['segment'][order],
                       meta=dict(branching=4, max_depth=depth,
                                 min_points_to_split=64, seed=0))
    return str(root)


def write_config(tmp_path):
    """The demo config plus the probe hook (its other hooks kept)."""
    from mmengine.config import Config
    hooks = Config.fromfile(DEMO).to_dict().get('custom_hooks', [])
    hooks = list(hooks) + [dict(type='RankProbeHook')]
    (tmp_path / 'probe_mod').mkdir()
    (tmp_path / 'probe_mod' / 'dbbd_rank_probe.py').write_text(PROBE)
    cfg = tmp_path / 'dist_cfg.py'
    cfg.write_text(
        f'_base_ = [{DEMO!r}]\n'
        "custom_imports = dict(imports=['dbbd_rank_probe'], "
        'allow_failed_imports=False)\n'
        f'custom_hooks = {hooks!r}\n')
    return str(cfg)


def env_for(tmp_path, **extra):
    env = dict(os.environ, PYTHONUNBUFFERED='1', OMP_NUM_THREADS='1')
    env['PYTHONPATH'] = os.pathsep.join(
        [str(tmp_path / 'probe_mod'), REPO] +
        ([env['PYTHONPATH']] if env.get('PYTHONPATH') else []))
    for k in ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR',
              'MASTER_PORT'):
        env.pop(k, None)
    env.update(extra)
    return env


def run_group(cmds_envs, cwd, timeout=TIMEOUT):
    """Start the processes in ``cwd``; a hang fails (killed at ``timeout``),
    and when one fails the others are stopped soon after instead of waiting
    in a collective. Returns (returncodes, combined output).

    ``cwd`` is a tmp dir: mmengine gathers the validation metrics of the
    ranks through files under ``.dist_test/`` in the current folder
    (``collect_results_cpu``) and leaves that folder behind."""
    procs = []
    for cmd, env in cmds_envs:
        procs.append(subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, start_new_session=True))
    deadline = time.monotonic() + timeout
    failed_at = None
    timed_out = False
    while any(p.poll() is None for p in procs):
        now = time.monotonic()
        if failed_at is None and any(p.poll() not in (None, 0)
                                     for p in procs):
            failed_at = now
        if now > deadline or (failed_at is not None and now > failed_at + 10):
            timed_out = now > deadline
            for p in procs:
                if p.poll() is None:
                    os.killpg(p.pid, signal.SIGKILL)
            break
        time.sleep(0.2)
    outs = [p.communicate()[0] for p in procs]
    out = '\n'.join(outs)
    if timed_out:
        out += f'\nTIMED OUT after {timeout} s (a hang)'
    return [p.returncode for p in procs], out


def torchrun(cfg, work, data_root, tmp_path, *extra, nproc=2):
    cmd = [sys.executable, '-m', 'torch.distributed.run',
           f'--nproc_per_node={nproc}', '--master_addr=127.0.0.1',
           f'--master_port={free_port()}', TRAIN, cfg, '--launcher',
           'pytorch', '--work-dir', work, '--cfg-options',
           f'data_root={data_root}', *TINY, *extra]
    codes, out = run_group([(cmd, env_for(tmp_path))], cwd=tmp_path)
    return codes[0], out


def read_probe(work):
    per_rank = {}
    for path in sorted(glob.glob(osp.join(work, 'scenes_rank*.txt'))):
        rank = int(osp.basename(path)[len('scenes_rank'):-len('.txt')])
        with open(path) as f:
            per_rank[rank] = [json.loads(line) for line in f if line.strip()]
    return per_rank


def iters(records, epoch=None):
    return [r for r in records if 'scenes' in r and
            (epoch is None or r['epoch'] == epoch)]


def levels(rec):
    """Levels of the batch that hold at least one region."""
    return sum(1 for n in rec['regions_per_level'] if n > 0)


def check_epoch(per_rank, epoch, all_scenes):
    """Disjoint scenes, different depths, the same (mean) logged loss."""
    r0, r1 = iters(per_rank[0], epoch), iters(per_rank[1], epoch)
    assert len(r0) == len(r1) >= 1
    s0 = {s for r in r0 for s in r['scenes']}
    s1 = {s for r in r1 for s in r['scenes']}
    assert not s0 & s1, f'epoch {epoch}: both ranks saw {s0 & s1}'
    assert s0 | s1 == set(all_scenes)
    for a, b in zip(r0, r1):
        assert a['world_size'] == b['world_size'] == 2
        assert levels(a) != levels(b), (a['regions_per_level'],
                                        b['regions_per_level'])
        # the logged values are the mean over ranks, identical on both
        # for the keys both have (a rank logs the levels of its own batch:
        # the reduction is one all_reduce, with no host synchronisation)
        common = set(a['logged']) & set(b['logged'])
        assert {'loss', 'loss_region', 'loss_point'} <= common
        assert set(a['logged']) == set(a['local']) | {'loss'}
        assert {k: a['logged'][k] for k in common} == pytest.approx(
            {k: b['logged'][k] for k in common}, rel=1e-6)
        local = [sum(v for k, v in r['local'].items() if 'loss' in k)
                 for r in (a, b)]
        assert local[0] != pytest.approx(local[1], rel=1e-3)
        assert a['logged']['loss'] == pytest.approx(np.mean(local),
                                                    rel=1e-5)
        # a per-level term is averaged over the ranks that have the level
        for key in (set(a['logged']) | set(b['logged'])) - {'loss'}:
            have = [r['local'][key] for r in (a, b) if key in r['local']]
            for r in (a, b):
                if key in r['logged']:
                    assert r['logged'][key] == pytest.approx(
                        np.mean(have), rel=1e-5), key
    return r0, r1


def logged_train_loss(work):
    """train/loss per step from rank 0's scalars.json files."""
    out = {}
    for path in sorted(glob.glob(osp.join(work, '*', 'vis_data',
                                          'scalars.json'))):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'train/loss' in rec:
                    out[rec['step']] = rec['train/loss']
    return out


def assert_checkpoints(work, *regular):
    """Exactly these regular checkpoints (plus best_* ones), and no
    temporary or partial file left by a write."""
    names = [n for n in os.listdir(work) if n != '.dbbd-run.lock']
    assert not [n for n in names if n.startswith('.') or 'tmp' in n], names
    pth = sorted(n for n in names if n.endswith('.pth'))
    assert [n for n in pth if not n.startswith('best_')] == list(regular)
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read().strip().endswith(regular[-1])


# ----------------------------------------------------------------------
# tests
# ----------------------------------------------------------------------
@pytest.fixture(scope='module')
def mixed_root(tmp_path_factory):
    """Train scenes of depths 2, 1, 1, 1: the rank holding the deep scene
    has 3 levels, the other 2 (every parameter used on both)."""
    root = tmp_path_factory.mktemp('mixed') / 'data'
    return make_mixed_depth_data(root, (2, 1, 1, 1))


@pytest.fixture(scope='module')
def shallow_root(tmp_path_factory):
    """Train scenes of depths 2, 0, 0, 0: the rank without the deep scene
    has single-region scenes only (1 level)."""
    root = tmp_path_factory.mktemp('shallow') / 'data'
    return make_mixed_depth_data(root, (2, 0, 0, 0))


def test_torchrun_two_ranks_disjoint_then_resume(mixed_root, tmp_path):
    cfg = write_config(tmp_path)
    work = str(tmp_path / 'work')
    scenes = [f'scene{i:04d}_00' for i in range(4)]

    rc, out = torchrun(cfg, work, mixed_root, tmp_path,
                       'train_cfg.max_epochs=1')
    assert rc == 0, out[-4000:]
    assert 'find_unused_parameters=False' in out
    per_rank = read_probe(work)
    assert sorted(per_rank) == [0, 1]
    r0, _ = check_epoch(per_rank, 0, scenes)

    # one regular checkpoint (and the best one), complete, by rank 0 only;
    # rank 1's torch.save calls would show here
    assert_checkpoints(work, 'epoch_1.pth')
    saves = {r: [x for x in recs if 'torch_save_calls' in x][0]
             for r, recs in per_rank.items()}
    assert saves[0]['torch_save_calls'], 'rank 0 saved nothing'
    assert saves[1]['torch_save_calls'] == []
    from dbbd.engine.checkpoint import load_checkpoint_safe
    ckpt = load_checkpoint_safe(osp.join(work, 'epoch_1.pth'))
    assert ckpt['meta']['epoch'] == 1
    # the console/TensorBoard value is the mean over ranks
    assert logged_train_loss(work)[1] == pytest.approx(
        r0[0]['logged']['loss'], rel=1e-5)

    rc, out = torchrun(cfg, work, mixed_root, tmp_path,
                       'train_cfg.max_epochs=2', '--resume')
    assert rc == 0, out[-4000:]
    assert 'Epoch(train) [1]' not in out
    assert 'Epoch(train) [2]' in out
    per_rank = read_probe(work)
    check_epoch(per_rank, 1, scenes)
    assert_checkpoints(work, 'epoch_1.pth', 'epoch_2.pth')


def test_slurm_single_level_batch_on_one_rank(shallow_root, tmp_path):
    """One rank's batch has single-region scenes only, so its propagator,
    context projection and aggregator get no gradient: find_unused_parameters
    is switched on from the data, and nothing hangs. Launched as srun would
    (one process per task, SLURM_* variables, no torchrun)."""
    cfg = write_config(tmp_path)
    work = str(tmp_path / 'work')
    port = str(free_port())
    cmds = []
    for rank in range(2):
        env = env_for(tmp_path, SLURM_PROCID=str(rank), SLURM_NTASKS='2',
                      SLURM_LOCALID=str(rank), SLURM_NODELIST='localhost',
                      MASTER_ADDR='127.0.0.1', MASTER_PORT=port)
        cmds.append(([sys.executable, TRAIN, cfg, '--launcher', 'slurm',
                      '--work-dir', work, '--cfg-options',
                      f'data_root={shallow_root}', *TINY,
                      'train_cfg.max_epochs=1'], env))
    codes, out = run_group(cmds, cwd=tmp_path)
    assert codes == [0, 0], out[-4000:]
    assert 'find_unused_parameters=True' in out
    per_rank = read_probe(work)
    r0, r1 = check_epoch(per_rank, 0,
                         [f'scene{i:04d}_00' for i in range(4)])
    assert sorted([levels(r0[0]), levels(r1[0])]) == [1, 3]
    assert_checkpoints(work, 'epoch_1.pth')


# ----------------------------------------------------------------------
# fast checks (no process group)
# ----------------------------------------------------------------------
def test_dist_train_sh_builds_the_torchrun_command(tmp_path):
    fake = tmp_path / 'fake_python'
    fake.write_text('#!/bin/sh\nfor a in "$@"; do echo "$a"; done\n')
    fake.chmod(0o755)
    env = dict(os.environ, PYTHON=str(fake), NNODES='2', NODE_RANK='1',
               MASTER_ADDR='10.1.2.3', MASTER_PORT='29123')
    r = subprocess.run(['bash', DIST_TRAIN, 'cfg.py', '4', '--amp',
                        '--cfg-options', 'a=1'], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    args = r.stdout.split('\n')
    assert args[:2] == ['-m', 'torch.distributed.run']
    for a in ('--nnodes=2', '--node_rank=1', '--master_addr=10.1.2.3',
              '--master_port=29123', '--nproc_per_node=4'):
        assert a in args
    i = args.index(TRAIN)
    assert args[i + 1:i + 7] == ['cfg.py', '--launcher', 'pytorch', '--amp',
                                 '--cfg-options', 'a=1']
    # defaults: one node, PORT as an alias of MASTER_PORT
    env = dict(os.environ, PYTHON=str(fake), PORT='29999')
    for k in ('NNODES', 'NODE_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        env.pop(k, None)
    r = subprocess.run(['bash', DIST_TRAIN, 'cfg.py', '2'], env=env,
                       capture_output=True, text=True, timeout=30)
    args = r.stdout.split('\n')
    for a in ('--nnodes=1', '--node_rank=0', '--master_addr=127.0.0.1',
              '--master_port=29999', '--nproc_per_node=2'):
        assert a in args
    r = subprocess.run(['bash', DIST_TRAIN, 'cfg.py'], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and 'usage' in r.stderr


def test_slurm_env_from_scontrol(tmp_path, monkeypatch):
    from dbbd.engine.distributed import _slurm_env
    bin_dir = tmp_path / 'bin'
    bin_dir.mkdir()
    scontrol = bin_dir / 'scontrol'
    scontrol.write_text('#!/bin/sh\n[ "$3" = "node[3-4]" ] && '
                        'printf "node3\\nnode4\\n"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv('PATH', f'{bin_dir}{os.pathsep}{os.environ["PATH"]}')
    for k in ('MASTER_ADDR', 'MASTER_PORT', 'SLURM_JOB_NODELIST'):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv('SLURM_PROCID', '5')
    monkeypatch.setenv('SLURM_NTASKS', '8')
    monkeypatch.setenv('SLURM_LOCALID', '1')
    monkeypatch.setenv('SLURM_NODELIST', 'node[3-4]')
    for k in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK'):
        monkeypatch.setenv(k, 'stale')
    _slurm_env()
    assert (os.environ['MASTER_ADDR'], os.environ['MASTER_PORT']) == (
        'node3', '29500')
    assert (os.environ['RANK'], os.environ['WORLD_SIZE'],
            os.environ['LOCAL_RANK']) == ('5', '8', '1')
    monkeypatch.delenv('SLURM_PROCID')
    with pytest.raises(RuntimeError, match='SLURM_PROCID'):
        _slurm_env()


def test_find_unused_parameters_decision(demo_root, shallow_root,
                                         mixed_root):
    from mmengine.config import Config

    from dbbd.engine.distributed import needs_find_unused_parameters
    cfg = Config.fromfile(DEMO)

    def decide(root, **ds):
        c = copy.deepcopy(cfg)
        c.train_dataloader.dataset.data_root = root
        c.train_dataloader.dataset.update(ds)
        return needs_find_unused_parameters(c)[0]

    assert decide(demo_root) is False
    assert decide(mixed_root) is False
    assert decide(shallow_root) is True
    # only the first scene (depth 2) is used
    assert decide(shallow_root, max_scenes=1) is False
    assert decide(mixed_root, max_depth=0) is True
    assert decide(str(demo_root) + '_absent') is True
    c = copy.deepcopy(cfg)
    c.train_dataloader.dataset.data_root = shallow_root
    c.model_wrapper_cfg = dict(find_unused_parameters=False)
    assert needs_find_unused_parameters(c) == (False, 'set in the config')


def test_reduce_log_vars_outside_distributed_is_identity():
    import torch

    from dbbd.engine.distributed import reduce_log_vars
    lv = {'loss': torch.tensor(1.0)}
    assert reduce_log_vars(lv) is lv
