"""Shared fixtures: a tiny prepared dataset of synthetic rooms.

Also puts ``tests/helpers`` on ``sys.path`` (``import tiny``,
``import dbbd_faults``), and fails the session when a test left something
in the repository root.
"""
import os
import os.path as osp
import sys

# OpenMP threads that spin while they wait make a shared 2-core machine
# several times slower (the tests run tools/train.py and torchrun as
# subprocesses beside the test process); waiting passively costs nothing
# measurable when the cores are free. Set before torch is first imported,
# and inherited by every subprocess.
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
# Under pytest-xdist (``-n 2``, the README's command) each worker takes a
# core: one compute thread per worker, and per subprocess it starts, instead
# of two workers each spinning up a thread per core on the same two cores.
if os.environ.get('PYTEST_XDIST_WORKER'):
    os.environ.setdefault('OMP_NUM_THREADS', '1')

import pytest  # noqa: E402

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), 'helpers'))

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Read when pytest loads this file, before any test runs.
_REPO_ENTRIES = frozenset(os.listdir(REPO))
# pytest's own cache (written when the session ends, -p no:cacheprovider
# turns it off)
_NOT_FROM_TESTS = frozenset({'.pytest_cache'})


@pytest.fixture(scope='session', autouse=True)
def repo_root_stays_clean():
    """Tests write under tmp dirs only: an entry that appeared in the
    repository root during the session (a ``work_dirs/``, ``data/`` or
    ``.dist_test/`` of a run started in the repository) fails it."""
    yield
    new = set(os.listdir(REPO)) - _REPO_ENTRIES - _NOT_FROM_TESTS
    assert not new, (
        f'the tests left {sorted(new)} in the repository root {REPO}; a '
        'test must write under tmp_path (run subprocesses with cwd=tmp_path)')


@pytest.fixture(scope='session')
def demo_root(tmp_path_factory):
    """4 train + 2 val synthetic rooms of 3,000 points, prepared with
    depth-3 trees, through the real preparation path."""
    from dbbd.datasets.demo import prepare_demo_data
    root = tmp_path_factory.mktemp('demo') / 'data'
    prepare_demo_data(str(root), num_train=4, num_val=2, num_points=3000,
                      seed=0, workers=0, progress=False, branching=4,
                      max_depth=3, min_points_to_split=64)
    return str(root)
