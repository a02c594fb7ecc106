"""What every particle-table format shares: positions read with their grid, and tomogram geometry.

Tools write positions in different units: pixels of the tomogram they picked in (Dynamo, STOPGAP,
IMOD, RELION 4), Angstrom from the corner (copick) or Angstrom from the centre (RELION 5). A reader
returns positions in voxels of the grid the file states, with that grid's voxel size when the file
knows it (Angstrom from the corner is a grid of 1 A voxels); moving them to a tomogram's voxels is
done once, by the caller, with :func:`deepfinder.core.io.rescale_positions`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..particles import ParticleTable


@dataclass(frozen=True)
class TomogramGeometry:
    """Size and sampling of one tomogram, as a table's centred coordinates need them.

    Attributes
    ----------
    size_xyz : tuple of int
        Size in voxels (x, y, z) at ``voxel_size``.
    voxel_size : float
        Angstrom per voxel.
    """

    size_xyz: tuple[int, int, int]
    voxel_size: float


@dataclass
class TableRead:
    """A particle table as read from a file.

    Attributes
    ----------
    particles : ParticleTable
        Positions in voxels of ``voxel_size``, from the tomogram corner (voxel centres at whole
        numbers); shifts the format stores apart (origins, Dynamo dx/dy/dz) already applied.
    voxel_size : float or None
        Angstrom per voxel of those positions where the file states it; None where it does not.
    """

    particles: ParticleTable
    voxel_size: float | None


def number(text: str, where: str) -> float:
    """``text`` as a finite number; :class:`InputError` naming ``where`` (file:line:column) otherwise.

    ``nan`` and ``inf`` are refused: a position or angle a tool could not compute is not a
    particle, and taking it as one would drop or miscount it silently further on.
    """
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputError(f"{where}: {text!r} is not a finite number: fix or remove the row")
    return value


def whole_numbers(values: np.ndarray, wheres: list[str], what: str) -> np.ndarray:
    """``values`` as ints; :class:`InputError` at the first one that is not whole (``wheres[i]`` names it)."""
    fractional = np.flatnonzero(values != np.round(values))
    if len(fractional):
        raise InputError(f"{wheres[fractional[0]]}: {what} are whole numbers, got {values[fractional[0]]:g}")
    return values.astype(int)


class SameForAll(Mapping):
    """Tomogram geometry for every name: for a table of one tomogram whose name may differ from
    the file's (a tsId, a file stem), where that tomogram's size is all a centred table needs."""

    def __init__(self, geometry: TomogramGeometry):
        self.geometry = geometry

    def __getitem__(self, name: str) -> TomogramGeometry:
        return self.geometry

    def __contains__(self, name: object) -> bool:
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0
