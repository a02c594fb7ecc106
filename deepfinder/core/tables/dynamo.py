"""Dynamo particle tables (``.tbl``) and their table maps (``.doc``).

A table row holds, in Dynamo's 1-based column numbers: the shifts ``dx, dy, dz`` (4-6), the angles
``tdrot, tilt, narot`` (7-9, degrees), the cross-correlation ``cc`` (10), the tomogram index (20),
the class (22), the position ``x, y, z`` (24-26) and, in tables of 36 columns or more, the voxel size
``apix`` (36, Angstrom, 0 where unset). Tables written by other programs may stop at column 26.

- Positions: a particle lies at ``x + dx``, in voxels of the tomogram it was picked in, counted from
  the tomogram corner like ours (as Scipion's Dynamo plugin and copick read them).
- Orientations: Dynamo's angles rotate the template onto the particle; the rotation matrix is the
  inverse of ``Rz(narot) Rx(tilt) Rz(tdrot)`` (scipy's extrinsic ``"zxz"`` with the angles in table
  order), as the eulerangles package, copick and cryoCAT convert them (Scipion's Dynamo plugin 3.5
  stores the inverse, so that angles imported through it give the inverse rotation). TOM/AV3 and
  STOPGAP motive lists write the same orientation as ``phi, the, psi = -narot, -tilt, -tdrot``.
- MATLAB writes values it computed as complex numbers as ``0+1.2e-06i`` (in column 28, say): such
  values are read as their real part.
- Tomogram names: a table map (``.doc``) lists one tomogram per line, its index then its name or
  file path (the rest of the line, spaces included). Without a map the names are the indices as text.

Reading is our own: :func:`dynamotable.read` accepts rows with missing values and ``nan`` silently
and names no line. Writing goes through :func:`dynamotable.write`, so that the table is one
``dynamotable`` reads; the table map beside it is ours, because ``dynamotable`` writes names that
hold spaces so that neither it nor Dynamo can read them back.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path

import dynamotable
import numpy as np
import pandas as pd
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..io import atomic_output
from ..particles import ParticleTable, euler_angles
from .geometry import TableRead, TomogramGeometry
from .values import number, whole_numbers

PathLike = str | os.PathLike

log = logging.getLogger(__name__)

# Dynamo's column numbers (1-based) of what a particle table carries.
SHIFT_COLUMNS = (4, 5, 6)
ANGLE_COLUMNS = (7, 8, 9)
SCORE_COLUMN = 10
TOMOGRAM_COLUMN = 20
CLASS_COLUMN = 22
POSITION_COLUMNS = (24, 25, 26)
VOXEL_SIZE_COLUMN = 36
MINIMUM_COLUMNS = max(POSITION_COLUMNS)

_DECIMAL = r"(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_MATLAB_COMPLEX = re.compile(rf"^(?P<real>[-+]?{_DECIMAL})[-+]{_DECIMAL}i$")


def rotations_from_dynamo(angles: np.ndarray) -> np.ndarray:
    """Rotation matrices (see :class:`ParticleTable`) of Dynamo angles.

    Parameters
    ----------
    angles : (n, 3) array
        ``tdrot, tilt, narot`` in degrees.

    Returns
    -------
    (n, 3, 3) array
    """
    angles = np.asarray(angles, dtype=float).reshape(-1, 3)
    if not len(angles):
        return np.empty((0, 3, 3))
    return Rotation.from_euler("zxz", angles, degrees=True).inv().as_matrix()


def dynamo_angles(rotation: np.ndarray) -> np.ndarray:
    """``tdrot, tilt, narot`` in degrees of (n, 3, 3) rotation matrices; inverse of
    :func:`rotations_from_dynamo`."""
    return euler_angles(np.transpose(rotation, (0, 2, 1)), "zxz")


def table_map_path(table_path: PathLike) -> Path:
    """The table map written beside a table: same name, extension ``.doc``."""
    return Path(table_path).with_suffix(".doc")


def read_table_map(path: PathLike) -> dict[int, str]:
    """Tomogram names of a Dynamo table map, by index.

    Raises
    ------
    InputError
        For a line without an index and a name, an index that is not a whole number or that
        appears twice; the message names the file and the line.
    """
    names: dict[int, str] = {}
    for line, text in enumerate(Path(path).read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = text.strip().split(maxsplit=1)
        if not fields:
            continue
        if len(fields) < 2:
            raise InputError(f"{path}:{line}: a table map line holds a tomogram index, then its name")
        index = number(fields[0], f"{path}:{line}:1")
        if not index.is_integer():
            raise InputError(f"{path}:{line}:1: tomogram index {fields[0]!r} is not a whole number")
        if int(index) in names:
            raise InputError(f"{path}:{line}: tomogram index {fields[0]} is listed twice")
        names[int(index)] = fields[1]
    return names


def tomogram_indices(names: np.ndarray) -> tuple[np.ndarray, dict[int, str]]:
    """Indices for the tomograms of a table, and the map from index to name.

    Names that are all positive whole numbers written plainly (``24``, not ``024``) keep their
    number, so that a table read without a map round-trips; other names are numbered from 1 in
    order of first appearance.

    Returns
    -------
    indices : (n,) int array
    names_by_index : dict of int to str
    """
    unique = list(dict.fromkeys(str(name) for name in names))
    if all(name.isascii() and name.isdigit() and name == str(int(name)) and int(name) > 0 for name in unique):
        numbers = {name: int(name) for name in unique}
    else:
        numbers = {name: i for i, name in enumerate(unique, start=1)}
    indices = np.array([numbers[str(name)] for name in names], dtype=int)
    return indices, {index: name for name, index in numbers.items()}


def tomogram_names(
    path: PathLike, indices: np.ndarray, lines: list[int], column: int, table_map: PathLike | None
) -> np.ndarray:
    """Tomogram names of the rows of a table, from a table map or from their indices.

    Parameters
    ----------
    path : path
        The table, for messages; its :func:`table_map_path` is the map when ``table_map`` is None
        and that file exists.
    indices : (n,) int array
        Tomogram index of each row.
    lines : list of int
        File line of each row.
    column : int
        Column of the indices in the file, for messages.
    table_map : path, optional
        The table map. Without one, the names are the indices as text.

    Raises
    ------
    InputError
        For an index that is not in the map, naming the row's ``file:line:column``.
    """
    if table_map is None and table_map_path(path).is_file():
        table_map = table_map_path(path)
    if table_map is None:
        log.info("%s: no table map; tomogram names are the indices of column %d", path, column)
        return np.array([str(index) for index in indices])
    names = read_table_map(table_map)
    for index, line in zip(indices, lines):
        if index not in names:
            raise InputError(f"{path}:{line}:{column}: tomogram {index} is not in the table map {table_map}")
    return np.array([names[index] for index in indices])


def read(
    path: PathLike,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
    table_map: PathLike | None = None,
) -> TableRead:
    """Particles of a Dynamo table.

    Parameters
    ----------
    path : path
        The ``.tbl`` file.
    tomograms : mapping, optional
        Unused: Dynamo positions need no tomogram geometry.
    table_map : path, optional
        Its table map (``.doc``). By default the ``.doc`` of the same name beside the table, if
        there is one; without a map, tomogram names are the indices of column 20 as text.

    Returns
    -------
    TableRead
        Positions ``x + dx`` in voxels of the tomograms the particles were picked in; the voxel
        size is column 36's when every row gives the same positive value, else None.

    Raises
    ------
    InputError
        For a row with fewer than 26 values or another count than the first row's, a value that is
        not a number, ``nan`` or infinite, a fractional tomogram index or class, or a tomogram
        index missing from the map; the message names the file, line and column.
    """
    lines: list[int] = []
    rows: list[list[float]] = []
    for line, text in enumerate(Path(path).read_text(encoding="utf-8-sig").splitlines(), start=1):
        fields = text.split()
        if not fields:
            continue
        if len(fields) < MINIMUM_COLUMNS:
            raise InputError(
                f"{path}:{line}: {len(fields)} values; a Dynamo table row has at least "
                f"{MINIMUM_COLUMNS} (positions in columns 24-26)"
            )
        if rows and len(fields) != len(rows[0]):
            raise InputError(f"{path}:{line}: {len(fields)} values where line {lines[0]} has {len(rows[0])}")
        rows.append([number(_real_part(field), f"{path}:{line}:{i}") for i, field in enumerate(fields, 1)])
        lines.append(line)
    if not rows:
        return TableRead(ParticleTable.empty(), None)
    values = np.array(rows)

    def columns(numbers: tuple[int, ...]) -> np.ndarray:
        return values[:, np.subtract(numbers, 1)]

    def whole(column: int, what: str) -> np.ndarray:
        return whole_numbers(values[:, column - 1], [f"{path}:{line}:{column}" for line in lines], what)

    particles = ParticleTable(
        tomo=tomogram_names(
            path, whole(TOMOGRAM_COLUMN, "tomogram indices"), lines, TOMOGRAM_COLUMN, table_map
        ),
        class_id=whole(CLASS_COLUMN, "classes"),
        xyz=columns(POSITION_COLUMNS) + columns(SHIFT_COLUMNS),
        rotation=rotations_from_dynamo(columns(ANGLE_COLUMNS)),
        score=values[:, SCORE_COLUMN - 1],
    )
    if values.shape[1] < VOXEL_SIZE_COLUMN:
        return TableRead(particles, None)
    return TableRead(particles, _voxel_size(values[:, VOXEL_SIZE_COLUMN - 1]))


def write(
    path: PathLike,
    particles: ParticleTable,
    voxel_size: float | None = None,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
) -> Path:
    """Write a Dynamo table and its table map (:func:`table_map_path`).

    Parameters
    ----------
    path : path
        The ``.tbl`` file.
    particles : ParticleTable
        Positions in voxels of ``voxel_size``, written as ``x, y, z`` with zero shifts.
    voxel_size : float, optional
        Angstrom per voxel, written in column 36 (0 when not given).
    tomograms : mapping, optional
        Unused: Dynamo positions need no tomogram geometry.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    indices, names = tomogram_indices(particles.tomo)
    angles = dynamo_angles(particles.rotation)
    table = pd.DataFrame(
        {
            "tdrot": angles[:, 0],
            "tilt": angles[:, 1],
            "narot": angles[:, 2],
            "cc": np.nan_to_num(particles.score, nan=0.0),
            "tomo": indices,
            "class": particles.class_id,
            "x": particles.xyz[:, 0],
            "y": particles.xyz[:, 1],
            "z": particles.xyz[:, 2],
            "apix": voxel_size or 0.0,
        }
    )
    # Dynamo's averaging flag (column 3) marks the particles it may use: all of ours.
    table["averaged_value"] = 1
    with atomic_output(table_map_path(path)) as map_temporary, atomic_output(path, ".tbl") as temporary:
        dynamotable.write(table, temporary)
        map_temporary.write_text(table_map_text(names))
    return path


def table_map_text(names: Mapping[int, str]) -> str:
    """The text of a table map: one ``index<TAB>name`` line per tomogram."""
    return "".join(f"{index}\t{name}\n" for index, name in sorted(names.items()))


def _real_part(text: str) -> str:
    """The real part of a MATLAB complex token (``0+1.2e-06i`` -> ``0``); other text as it is."""
    match = _MATLAB_COMPLEX.match(text)
    return match.group("real") if match else text


def _voxel_size(apix: np.ndarray) -> float | None:
    """The voxel size of column 36 when every row states the same positive one."""
    if np.all(apix == apix[0]) and apix[0] > 0:
        return float(apix[0])
    return None
