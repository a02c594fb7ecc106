"""The engine's user errors: inputs or settings it refuses, with a message that names the fix."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator


class InputError(ValueError):
    """An input the engine refuses (unreadable or inconsistent file, value out of range).

    The message names the file (and the row and column of a table) and the problem;
    the command line prints it as one line and exits with code 2.
    """


@contextlib.contextmanager
def about_file(path: str | os.PathLike | None) -> Iterator[None]:
    """Refusals of the engine within the block are about the file ``path``: their message names it."""
    try:
        yield
    except InputError as error:
        raise InputError(f"{path}: {error}") from error
