"""STOPGAP motive lists: STAR files with a ``data_stopgap_motivelist`` block.

Each row is a particle: ``motl_idx, tomo_num, object, subtomo_num, halfset, orig_x, orig_y, orig_z,
score, x_shift, y_shift, z_shift, phi, psi, the, class``.

- Positions: a particle lies at ``orig + shift``, in voxels of its tomogram, counted from the corner
  as Dynamo's tables are (STOPGAP and Dynamo tables convert into each other without offset).
- Orientations: ``phi, the, psi`` (degrees) are the ZXZ angles of TOM/AV3 motive lists, which
  STOPGAP copies unchanged, as our object lists use them: the rotation is ``Rz(psi) Rx(the) Rz(phi)``
  (:func:`deepfinder.core.particles.rotations_from_euler_zxz`). The same orientation in a Dynamo
  table has ``tdrot, tilt, narot = -psi, -the, -phi``: motive lists converted to Dynamo tables
  have tilts from -180 to 0 degrees.
- Tomograms: ``tomo_num`` is a number. Names come from a table map in Dynamo's format
  (:func:`deepfinder.core.tables.dynamo.read_table_map`), by default the ``.doc`` beside the file,
  which :func:`write` writes; without one the names are the numbers as text.

Read and written by the product's STAR parser and writer (:mod:`deepfinder.core.tables.star`):
emtable cannot read these files (it makes a Python ``namedtuple`` of the labels, and ``class`` is
a Python keyword), and it would drop the values of a row beyond its labels silently and name no
line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_output
from ..particles import ParticleTable, rotations_from_euler_zxz
from .dynamo import (
    table_map_path,
    table_map_text,
    tomogram_indices,
    tomogram_names,
)
from .geometry import TableRead, TomogramGeometry
from .star import read_blocks, write_blocks
from .values import whole_numbers

PathLike = str | os.PathLike

BLOCK = "stopgap_motivelist"
LABELS = (
    "motl_idx",
    "tomo_num",
    "object",
    "subtomo_num",
    "halfset",
    "orig_x",
    "orig_y",
    "orig_z",
    "score",
    "x_shift",
    "y_shift",
    "z_shift",
    "phi",
    "psi",
    "the",
    "class",
)
REQUIRED = ("tomo_num", "orig_x", "orig_y", "orig_z")
# Values of the optional columns where a file has no such column.
DEFAULTS = {"x_shift": 0.0, "y_shift": 0.0, "z_shift": 0.0, "phi": 0.0, "psi": 0.0, "the": 0.0, "class": 1.0}


def is_motive_list(path: PathLike) -> bool:
    """Whether a STAR file is a STOPGAP motive list: its first data block is ``data_stopgap_motivelist``.

    For telling these files from RELION's, which share the ``.star`` extension.
    """
    with open(path, encoding="utf-8-sig") as handle:
        for text in handle:
            if text.startswith("data_"):
                return text.split()[0] == f"data_{BLOCK}"
    return False


def read(
    path: PathLike,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
    table_map: PathLike | None = None,
) -> TableRead:
    """Particles of a STOPGAP motive list.

    Parameters
    ----------
    path : path
        The ``.star`` file.
    tomograms : mapping, optional
        Unused: STOPGAP positions need no tomogram geometry.
    table_map : path, optional
        Names of the tomograms by ``tomo_num`` (Dynamo's ``.doc`` format). By default the ``.doc``
        of the same name beside the file, if there is one.

    Returns
    -------
    TableRead
        Positions ``orig + shift`` in voxels; no voxel size (STOPGAP lists state none).

    Raises
    ------
    InputError
        For a file without the block or a position column, a row with too few or too many values,
        a value that is not a number, ``nan`` or infinite, or a fractional ``tomo_num`` or
        ``class``; the message names the file, line and column.
    """
    block = read_blocks(path).get(BLOCK)
    if block is None:
        raise InputError(f"{path}: no data_{BLOCK} block; is it a STOPGAP motive list?")
    missing = [label for label in REQUIRED if not block.has(label)]
    if missing:
        raise InputError(
            f"{path}: no column {', '.join(missing)} in data_{BLOCK}; is it a STOPGAP motive list?"
        )
    if not block.rows:
        return TableRead(ParticleTable.empty(), None)

    def column(label: str) -> np.ndarray:
        return block.numbers(label, DEFAULTS.get(label, np.nan))

    def whole(label: str, what: str) -> np.ndarray:
        values = column(label)
        return whole_numbers(values, block.wheres(label), what) if block.has(label) else values.astype(int)

    def xyz(pattern: str) -> np.ndarray:
        return np.stack([column(pattern.format(axis)) for axis in "xyz"], axis=1)

    tomogram_numbers = whole("tomo_num", "tomogram numbers")
    lines = [row.line for row in block.rows]
    particles = ParticleTable(
        tomo=tomogram_names(path, tomogram_numbers, lines, block.labels.index("tomo_num") + 1, table_map),
        class_id=whole("class", "classes"),
        xyz=xyz("orig_{}") + xyz("{}_shift"),
        rotation=rotations_from_euler_zxz(column("phi"), column("the"), column("psi")),
        score=column("score"),
    )
    return TableRead(particles, None)


def write(
    path: PathLike,
    particles: ParticleTable,
    voxel_size: float | None = None,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
) -> Path:
    """Write a STOPGAP motive list and the table map of its tomogram names.

    Parameters
    ----------
    path : path
        The ``.star`` file; the table map is :func:`~deepfinder.core.tables.dynamo.table_map_path`.
    particles : ParticleTable
        Positions in voxels, written as whole ``orig`` voxels plus ``shift``; halfsets alternate
        A, B; an unknown score is written as 0.
    voxel_size, tomograms :
        Unused: STOPGAP lists state neither.

    Returns
    -------
    Path
        ``path``.
    """
    path = Path(path)
    numbers, names = tomogram_indices(particles.tomo)
    origins = np.round(particles.xyz)
    shifts = particles.xyz - origins
    phi, the, psi = particles.euler_zxz().T
    scores = np.nan_to_num(particles.score, nan=0.0)
    rows = [
        [
            str(i + 1),
            str(numbers[i]),
            "1",
            str(i + 1),
            "AB"[i % 2],
            *(f"{v:.6f}" for v in origins[i]),
            f"{scores[i]:.6f}",
            *(f"{v:.6f}" for v in shifts[i]),
            f"{phi[i]:.6f}",
            f"{psi[i]:.6f}",
            f"{the[i]:.6f}",
            str(particles.class_id[i]),
        ]
        for i in range(len(particles))
    ]
    with atomic_output(table_map_path(path)) as map_temporary:
        write_blocks(path, {BLOCK: (list(LABELS), rows)})
        map_temporary.write_text(table_map_text(names))
    return path
