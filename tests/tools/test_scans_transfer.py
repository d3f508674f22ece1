"""``tools/scans_transfer.sh``, the one command of the real-scans table,
end to end as a subprocess on a folder of small generated PLY scans, with
the configs of ``configs/scans/`` at one epoch each."""
import os
import os.path as osp
import subprocess
import sys

from tiny import REPO

SCRIPT = osp.join(REPO, 'tools', 'scans_transfer.sh')


def test_prepares_pretrains_fine_tunes_and_prints_the_table(tmp_path):
    from scan_files import write_scan_ply
    src = tmp_path / 'scans'
    src.mkdir()
    for i in range(8):
        write_scan_ply(str(src / f'scan_{i}.ply'), n=1500, seed=i)
    env = dict(os.environ, DATA=str(tmp_path / 'data'),
               WORK=str(tmp_path / 'work'), PYTHON=sys.executable,
               PYTHONUNBUFFERED='1')
    env.pop('OMP_NUM_THREADS', None)  # the script's own defaults
    env.pop('JOBS', None)
    proc = subprocess.run(
        ['bash', SCRIPT, str(src), '--epochs', '1', '--pretrain-epochs', '1',
         '--labelled-scenes', '4'],
        cwd=str(tmp_path), env=env, capture_output=True, text=True,
        timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    # the split of create_data.py, then every row and floor of the table
    assert 'train: 6, val: 2' in out, out[:2000]
    assert 'up to 2 runs at once' in out  # the script's --jobs default
    table = out[out.index('| pre-training | protocol |'):]
    for row in ('| dbbd_ema_spunet_scans | linear probe | 4 scenes',
                '| dbbd_ema_spunet_scans | fine-tune | 4 scenes',
                '| none (spunet) | scratch | 4 scenes',
                '| floor: majority class |',
                '| floor: probe on raw features |',
                '| floor: probe on untrained spunet |'):
        assert row in table, table[:3000]
    # the fine-tune started from the pre-training it made
    ft_log = tmp_path / 'work' / 'dbbd_ema_spunet_scans' / 'seed0' / 'ft_s4' / \
        'train.log'
    assert 'pretrained: loaded' in ft_log.read_text()
