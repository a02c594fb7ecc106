"""The engine's user errors: inputs or settings it refuses, with a message that names the fix."""

from __future__ import annotations


class InputError(ValueError):
    """An input the engine refuses (unreadable or inconsistent file, value out of range).

    The message names the file (and the row and column of a table) and the problem;
    the command line prints it as one line and exits with code 2.
    """
