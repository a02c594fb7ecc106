"""The project's CSV particle table: tomo, class_id, x, y, z (voxels), phi, theta, psi (ZXZ, degrees), score.

Positions are in voxels of the tomogram the row names, from its corner (voxel centres at whole
numbers); the file states no voxel size. Read strictly: every row has one value per column, every
number is finite; a UTF-8 byte-order mark (spreadsheets write one) and CRLF line ends are accepted.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_output
from ..particles import ParticleTable, rotations_from_euler_zxz
from .geometry import TableRead, TomogramGeometry
from .values import number, whole_numbers

COLUMNS = ("tomo", "class_id", "x", "y", "z", "phi", "theta", "psi", "score")
REQUIRED = ("class_id", "x", "y", "z")
# Columns a row may leave empty, and the value they then take.
DEFAULTS = {"phi": 0.0, "theta": 0.0, "psi": 0.0, "score": np.nan}


def write(
    path: str | os.PathLike,
    table: ParticleTable,
    voxel_size: float | None = None,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
) -> Path:
    """Write ``table`` (positions in voxels of the tomograms) as the project's CSV; an unknown score
    is left empty.

    ``voxel_size`` and ``tomograms`` are not stored: the CSV's positions are in the tomograms' voxels.
    """
    path = Path(path)
    angles = table.euler_zxz()
    with atomic_output(path) as temporary, open(temporary, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for i in range(len(table)):
            writer.writerow(
                [
                    table.tomo[i],
                    int(table.class_id[i]),
                    *(f"{v:.4f}" for v in table.xyz[i]),
                    *(f"{v:.4f}" for v in angles[i]),
                    "" if np.isnan(table.score[i]) else f"{table.score[i]:.6g}",
                ]
            )
    return path


def read(
    path: str | os.PathLike,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
    voxel_size: float | None = None,
) -> TableRead:
    """Read a CSV written by :func:`write` (angles and score optional).

    Returns positions in voxels with ``voxel_size`` None: the file does not state it, its positions
    are in the voxels of the tomogram each row names. A missing column, a row with too few or too
    many values, an open quote, a value that is not a finite number raise :class:`InputError`
    naming ``file:line:column`` (the column counted from 1).
    """
    header, rows = _rows(Path(path))
    missing = [name for name in REQUIRED if name not in header]
    if missing:
        raise InputError(
            f"{path}:1: missing column(s) {', '.join(missing)}; expected columns {', '.join(COLUMNS)}"
        )
    if not rows:
        return TableRead(ParticleTable.empty(), None)

    def column(name: str) -> np.ndarray:
        if name not in header:
            return np.full(len(rows), DEFAULTS[name])
        index = header.index(name)
        values = []
        for line, fields in rows:
            text = fields[index].strip()
            where = f"{path}:{line}:{index + 1}: column {name}"
            if not text and name in DEFAULTS:
                values.append(DEFAULTS[name])
            elif not text:
                raise InputError(f"{where}: missing value")
            else:
                values.append(number(text, where))
        return np.array(values, dtype=float)

    class_index = header.index("class_id") + 1
    class_id = whole_numbers(
        column("class_id"), [f"{path}:{line}:{class_index}: column class_id" for line, _ in rows], "class ids"
    )
    tomo = [fields[header.index("tomo")] if "tomo" in header else "" for _, fields in rows]
    particles = ParticleTable(
        tomo=np.array(tomo, dtype=str),
        class_id=class_id,
        xyz=np.stack([column("x"), column("y"), column("z")], axis=1),
        rotation=rotations_from_euler_zxz(column("phi"), column("theta"), column("psi")),
        score=column("score"),
    )
    return TableRead(particles, None)


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the (first line, values) of each non-empty row, each row checked for its length."""
    rows: list[tuple[int, list[str]]] = []
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle, strict=True)
        header: list[str] = []
        start = 1
        try:
            for fields in reader:
                if not header:
                    header = [name.strip() for name in fields]
                elif any(field.strip() for field in fields):
                    if len(fields) != len(header):
                        column = min(len(fields), len(header)) + 1
                        raise InputError(
                            f"{path}:{start}:{column}: {len(fields)} values for {len(header)} columns "
                            f"({', '.join(header)})"
                        )
                    rows.append((start, fields))
                start = reader.line_num + 1
        except csv.Error as error:
            raise InputError(f"{path}:{start}: {error} (a quote left open?)") from None
    return header, rows
