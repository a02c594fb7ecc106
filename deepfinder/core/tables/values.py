"""Strict reading of the values of particle tables: a value refused names where it stands."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from ..errors import InputError


def number(text: str, where: str) -> float:
    """``text`` as a number (``nan`` and ``inf`` included: see :func:`check_finite`).

    Parameters
    ----------
    text : str
        The value as written in the file.
    where : str
        Where it stands, ``file:line:column``, for the error message.

    Raises
    ------
    InputError
        When ``text`` is not a number.
    """
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a number") from None


def check_finite(
    values: np.ndarray, lines: Sequence[int | str], columns: Sequence[int | str], path: str | os.PathLike
) -> None:
    """Refuse a table whose values hold ``nan`` or an infinity.

    Parameters
    ----------
    values : (rows, columns) float array
        The values read, one row per table row.
    lines, columns : sequences of int or str
        The file line of each row and the file column of each column of ``values`` (or, in a
        binary file, the names of the rows and columns).
    path : path
        The file, for the message.

    Raises
    ------
    InputError
        Naming ``file:line:column`` of the first value that is not finite.
    """
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, column = bad[0]
        raise InputError(
            f"{path}:{lines[row]}:{columns[column]}: {values[row, column]} is not a finite number; "
            "give a value or remove the row"
        )


def check_whole(
    values: np.ndarray, lines: Sequence[int | str], columns: Sequence[int | str], path: str | os.PathLike
) -> None:
    """Refuse a table whose values (indices, classes) are not finite whole numbers.

    The parameters are those of :func:`check_finite`.
    """
    check_finite(values, lines, columns, path)
    bad = np.argwhere(values != np.round(values))
    if len(bad):
        row, column = bad[0]
        raise InputError(
            f"{path}:{lines[row]}:{columns[column]}: {values[row, column]} is not a whole number"
        )
