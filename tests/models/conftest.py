"""Fixtures of the model tests."""
import pytest
import torch


@pytest.fixture(autouse=True)
def _seed_and_one_thread():
    # One thread: these tests run thousands of tiny ops, for which a second
    # thread only adds synchronisation (and stalls when the CPU is shared).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(threads)
