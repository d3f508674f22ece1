"""Fixtures of the engine tests (the toy Runner lives in toy_runner.py)."""
import pytest

from toy_runner import build_toy_runner


@pytest.fixture
def make_toy_runner():
    """Factory of tiny real Runners: :func:`toy_runner.build_toy_runner`."""
    return build_toy_runner
