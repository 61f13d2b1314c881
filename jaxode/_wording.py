"""The words a message uses for a setting to change: the Python argument when jaxode is used
as a library, the command-line option when the `jaxode` command runs (it says so here)."""

import contextlib
import contextvars
from collections.abc import Iterator

_COMMAND_LINE = contextvars.ContextVar("jaxode_command_line", default=False)


def setting(python: str, option: str) -> str:
    """`option` (`"--out"`) inside `command_line()`, else `python` (`"run_dir"`)."""
    return option if _COMMAND_LINE.get() else python


@contextlib.contextmanager
def command_line() -> Iterator[None]:
    """Messages raised in the block name command-line options."""
    token = _COMMAND_LINE.set(True)
    try:
        yield
    finally:
        _COMMAND_LINE.reset(token)
