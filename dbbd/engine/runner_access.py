"""What DBBD's hooks need to know about a Runner that mmengine 0.10.7 does
not expose publicly.

``Runner.__init__`` keeps ``resume`` and ``load_from`` in the private
``_resume`` and ``_load_from`` and offers no accessor for either (nor a way
to choose the file an auto-resume opens); ``Runner.load_or_resume`` reads
them. The three functions below are the only places DBBD touches them, so
a later mmengine with public accessors changes this file only.
"""
from typing import Optional

__all__ = ['resume_requested', 'checkpoint_to_load', 'set_checkpoint_to_load']


def resume_requested(runner) -> bool:
    """Whether the runner resumes (``resume=True``) rather than only loading
    weights (``load_from``) or starting afresh."""
    return bool(getattr(runner, '_resume', False))


def checkpoint_to_load(runner) -> Optional[str]:
    """The checkpoint ``load_from`` names (the one ``--resume PATH``
    resumes from); None for none or for an auto-resume."""
    return getattr(runner, '_load_from', None)


def set_checkpoint_to_load(runner, path: str) -> None:
    """Make ``Runner.load_or_resume`` open ``path``: for an auto-resume,
    its "resume from this checkpoint" branch instead of its own reading of
    ``last_checkpoint``. Call it before training loads (``before_run``)."""
    runner._load_from = path
