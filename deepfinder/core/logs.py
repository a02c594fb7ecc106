"""Showing the engine's log messages (epochs, losses, tiles) to a user.

The engine logs through module loggers under ``deepfinder`` (progress at INFO,
details at DEBUG) and configures nothing: a library stays silent until its
caller decides. The command line shows them with :func:`engine_log`; Scipion
protocols need nothing, since pyworkflow sends every logger's INFO lines to
the run's stdout log.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO


@contextmanager
def engine_log(level: int = logging.INFO, stream: TextIO | None = None) -> Iterator[None]:
    """Print the engine's messages from ``level`` up, one plain line each, while in the block.

    Parameters
    ----------
    level : int
        ``logging.INFO`` shows progress, ``logging.WARNING`` only problems,
        ``logging.DEBUG`` everything.
    stream : text file, optional
        Where the lines go; default ``sys.stdout`` (at the time of the call).
    """
    logger = logging.getLogger("deepfinder")
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    # The lines are shown here; handlers of the root logger would show them twice.
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.level, logger.propagate = saved
