"""What every particle-table format shares: positions read with their grid, and tomogram geometry.

Tools write positions in different units: pixels of the tomogram they picked in (Dynamo, STOPGAP,
IMOD, RELION 4), Angstrom from the corner (copick) or Angstrom from the centre (RELION 5). A reader
returns positions in voxels of the grid the file states, with that grid's voxel size when the file
knows it (Angstrom from the corner is a grid of 1 A voxels); moving them to a tomogram's voxels is
done once, by the caller, with :func:`deepfinder.core.io.rescale_positions`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

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
