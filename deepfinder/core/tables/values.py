"""Strict reading of the values of particle tables: a value refused names where it stands."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np

from ..errors import InputError


def number(text: str, where: str) -> float:
    """``text`` as a finite number.

    ``nan`` and ``inf`` are refused: a position or angle a tool could not compute is not a
    particle, and taking it as one would drop or miscount it silently further on.

    Parameters
    ----------
    text : str
        The value as written in the file.
    where : str
        Where it stands, ``file:line:column``, for the error message.

    Raises
    ------
    InputError
        When ``text`` is not a finite number.
    """
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {text!r} is not a finite number: fix or remove the row")
    return value


def whole_numbers(values: np.ndarray, wheres: Sequence[str], what: str) -> np.ndarray:
    """``values`` (indices, classes) as ints.

    Parameters
    ----------
    values : (n,) float array
        Finite numbers, as :func:`number` reads them.
    wheres : sequence of str
        Where each value stands (``file:line:column``), for the error message.
    what : str
        What the values are, plural (``"class ids"``), for the error message.

    Raises
    ------
    InputError
        Naming the first value that is not a whole number.
    """
    fractional = np.flatnonzero(values != np.round(values))
    if len(fractional):
        raise InputError(f"{wheres[fractional[0]]}: {what} are whole numbers, got {values[fractional[0]]:g}")
    return values.astype(int)


def check_finite(
    values: np.ndarray, lines: Sequence[int | str], columns: Sequence[int | str], path: str | os.PathLike
) -> None:
    """Refuse values read from a binary file that hold ``nan`` or an infinity.

    Parameters
    ----------
    values : (rows, columns) float array
        The values read, one row per table row.
    lines, columns : sequences of int or str
        The names of the rows and of the columns of ``values``, for the message.
    path : path
        The file, for the message.

    Raises
    ------
    InputError
        Naming ``file:row:column`` of the first value that is not finite.
    """
    bad = np.argwhere(~np.isfinite(values))
    if len(bad):
        row, column = bad[0]
        raise InputError(
            f"{path}:{lines[row]}:{columns[column]}: {values[row, column]} is not a finite number; "
            "give a value or remove the row"
        )
