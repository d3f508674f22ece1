"""Shared fixtures: a tiny prepared dataset of synthetic rooms.

Also puts ``tests/helpers`` on ``sys.path`` (``import tiny``,
``import dbbd_faults``).
"""
import os.path as osp
import sys

import pytest

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), 'helpers'))


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
