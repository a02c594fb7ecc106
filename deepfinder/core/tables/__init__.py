"""Particle tables in the formats of the tools users run, read and written through one registry.

Every format module exposes::

    read(path, tomograms=None) -> TableRead
    write(path, table, voxel_size=None, tomograms=None) -> Path

``tomograms`` maps a tomogram name to its :class:`TomogramGeometry` (size and Angstrom per voxel),
for formats whose positions are centred; ``read`` returns positions from the tomogram corner in
voxels of the grid the file states (:class:`TableRead`, ``voxel_size`` None where the file states
none); ``write`` takes positions in voxels of ``voxel_size`` (Angstrom). Readers refuse a malformed
row with ``file:line:column`` and never rescale: :func:`read_table` does that once.

A format is registered in :data:`FORMATS` only, with its name, file extensions and what its
writer needs; :func:`read_table`, :func:`write_table` and :func:`convert_table` (``deepfinder
convert``) find it there by name or by extension.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import io
from ..errors import InputError
from ..particles import ParticleTable
from . import csv, star, xml
from .geometry import SameForAll, TableRead, TomogramGeometry

__all__ = [
    "FORMATS",
    "SameForAll",
    "TableFormat",
    "TableRead",
    "TomogramGeometry",
    "convert_table",
    "read_table",
    "table_format",
    "tomograms_from",
    "write_table",
]

PathLike = str | os.PathLike
Tomograms = Mapping[str, TomogramGeometry]


@dataclass(frozen=True)
class TableFormat:
    """A particle-table format.

    Attributes
    ----------
    name : str
        What users call it (``--from``/``--to``).
    extensions : tuple of str
        File extensions, lower case with the dot; the first format registered for an extension
        is the one an extension alone chooses.
    read, write : callable
        The format module's reader and writer (see the package's description).
    in_tomogram_voxels : bool
        Positions are in voxels of the tomogram each row names (the project's own tables): a
        file without a voxel size is then in the tomograms' voxels, not of unknown units.
    writer_needs_voxel_size : bool
        The writer stores positions in Angstrom, so needs the voxel size of the table's positions.
    writer_needs_tomograms : bool
        The writer stores centred positions, so needs each tomogram's size.
    """

    name: str
    extensions: tuple[str, ...]
    read: Callable[..., TableRead]
    write: Callable[..., Path]
    in_tomogram_voxels: bool = False
    writer_needs_voxel_size: bool = False
    writer_needs_tomograms: bool = False


# The one place a format is registered.
FORMATS: dict[str, TableFormat] = {
    f.name: f
    for f in (
        TableFormat("csv", (".csv",), csv.read, csv.write, in_tomogram_voxels=True),
        TableFormat("xml", (".xml",), xml.read, xml.write, in_tomogram_voxels=True),
        TableFormat(
            "relion5",
            (".star",),
            star.read,
            star.write_relion5,
            writer_needs_voxel_size=True,
            writer_needs_tomograms=True,
        ),
        TableFormat("relion4", (".star",), star.read, star.write_relion4),
    )
}


def table_format(path: PathLike, name: str | None = None) -> TableFormat:
    """The format called ``name``, else the one ``path``'s extension names; :class:`InputError` if none."""
    if name is not None:
        if name not in FORMATS:
            raise InputError(f"unknown table format {name!r}: use one of {', '.join(FORMATS)}")
        return FORMATS[name]
    suffix = Path(path).suffix.lower()
    for table_format_ in FORMATS.values():
        if suffix in table_format_.extensions:
            return table_format_
    extensions = sorted({e for f in FORMATS.values() for e in f.extensions})
    raise InputError(
        f"{path}: unknown particle table extension {suffix or '(none)'!r}: use {', '.join(extensions)} "
        f"or name the format ({', '.join(FORMATS)})"
    )


def read_table(
    path: PathLike,
    fmt: str | None = None,
    *,
    tomograms: Tomograms | None = None,
    coordinates_voxel_size: float | None = None,
    voxel_size: float | None = None,
    volume_shape_xyz: tuple[int, int, int] | None = None,
) -> TableRead:
    """Read the particle table ``path`` (format ``fmt``, else by extension).

    Parameters
    ----------
    tomograms
        Geometry of the tomograms the table names, for centred positions (RELION 5).
    coordinates_voxel_size
        Angstrom per pixel of the positions, for a file that does not state it; refused when
        the file does.
    voxel_size
        Angstrom per voxel to return the positions in (a tomogram's); None: the file's grid.
    volume_shape_xyz
        The tomogram's size at ``voxel_size``, to warn when many positions fall outside it.

    Returns
    -------
    TableRead
        Positions from the tomogram corner in voxels of its ``voxel_size``: ``voxel_size`` when
        given, else the file's grid (None for the project's tables, in the tomograms' voxels).
    """
    table_format_ = table_format(path, fmt)
    read = table_format_.read(path, tomograms=tomograms)
    grid = read.voxel_size
    if grid is not None and coordinates_voxel_size:
        raise InputError(
            f"{path} states its positions' units ({grid:g} A per pixel): drop the coordinates' voxel size"
        )
    if grid is None:
        grid = coordinates_voxel_size
    if grid is None and table_format_.in_tomogram_voxels:
        return TableRead(read.particles, voxel_size)
    if grid is None:
        raise InputError(
            f"{path}: positions in pixels, but the file states no pixel size: give the coordinates' "
            "voxel size (Angstrom per pixel of its positions)"
        )
    if voxel_size is None:
        return TableRead(read.particles, grid)
    return TableRead(
        io.rescale_positions(read.particles, grid, voxel_size, volume_shape_xyz, path), voxel_size
    )


def write_table(
    path: PathLike,
    table: ParticleTable,
    fmt: str | None = None,
    *,
    voxel_size: float | None = None,
    tomograms: Tomograms | None = None,
) -> Path:
    """Write ``table`` (positions in voxels of ``voxel_size`` Angstrom) as ``fmt``, else by extension.

    ``tomograms`` gives each named tomogram's geometry, for formats with centred positions.
    """
    table_format_ = table_format(path, fmt)
    if table_format_.writer_needs_voxel_size and not voxel_size:
        raise InputError(
            f"{path}: {table_format_.name} stores positions in Angstrom: give the voxel size of the positions"
        )
    if table_format_.writer_needs_tomograms and tomograms is None:
        raise InputError(
            f"{path}: {table_format_.name} positions are centred: give the tomograms' sizes "
            "(a RELION 5 tomograms.star, or sizes)"
        )
    return table_format_.write(path, table, voxel_size=voxel_size, tomograms=tomograms)


def tomograms_from(text: str, voxel_size: float | None = None) -> Tomograms:
    """Tomogram geometry from ``--tomograms``: a RELION 5 tomograms.star, or one size ``X,Y,Z``
    (voxels of ``voxel_size``) for every tomogram."""
    if Path(text).is_file():
        return star.read_tomograms(text)
    try:
        size = tuple(int(v) for v in text.split(","))
    except ValueError:
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise InputError(
            f"--tomograms {text!r}: neither a tomograms.star file nor a size X,Y,Z in voxels "
            "(e.g. 928,928,464)"
        )
    if not voxel_size:
        raise InputError(f"--tomograms {text}: a size in voxels needs the voxel size (--voxel-size)")
    return SameForAll(TomogramGeometry(size, voxel_size))


def convert_table(
    source: PathLike,
    target: PathLike,
    from_format: str | None = None,
    to_format: str | None = None,
    *,
    tomograms: Tomograms | None = None,
    coordinates_voxel_size: float | None = None,
    voxel_size: float | None = None,
) -> tuple[Path, int]:
    """Convert the table ``source`` to ``target``; returns the file written and its row count.

    Positions are written in voxels of ``voxel_size`` (Angstrom), else of the source's pixel size,
    else of the tomograms' common voxel size (the project's tables state none).
    """
    io.refuse_overwriting_inputs([target], [source])
    read = read_table(source, from_format, tomograms=tomograms, coordinates_voxel_size=coordinates_voxel_size)
    output_voxel_size = voxel_size or read.voxel_size or _common_voxel_size(tomograms)
    particles = read.particles
    if read.voxel_size and output_voxel_size != read.voxel_size:
        particles = io.rescale_positions(particles, read.voxel_size, output_voxel_size, None, source)
    written = write_table(target, particles, to_format, voxel_size=output_voxel_size, tomograms=tomograms)
    return written, len(particles)


def _common_voxel_size(tomograms: Tomograms | None) -> float | None:
    if isinstance(tomograms, SameForAll):
        return tomograms.geometry.voxel_size
    sizes = {g.voxel_size for g in (tomograms or {}).values()}
    return sizes.pop() if len(sizes) == 1 else None
