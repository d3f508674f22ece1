"""The error of a command that cannot go on, and how a tool prints it.

The functions of :mod:`dbbd.apis` raise :class:`CommandError` with a message
of one line that says what is wrong and what to do; a tool prints it as
``error: <message>`` on stderr and exits with status 1
(:func:`exit_on_error`). Its own module so that every function behind a
tool can raise it without importing another.
"""
import contextlib
import sys

__all__ = ['CommandError', 'exit_on_error', 'fail']


class CommandError(Exception):
    """A command cannot go on; the message is one line."""


def fail(msg):
    """One line on stderr, exit status 1."""
    print(f'error: {msg}', file=sys.stderr)
    sys.exit(1)


@contextlib.contextmanager
def exit_on_error():
    """Turn a :class:`CommandError` raised inside into :func:`fail`."""
    try:
        yield
    except CommandError as e:
        fail(str(e))
