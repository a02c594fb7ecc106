"""Particle tables in the formats of the tools users run, read and written through one registry.

Every format module exposes::

    read(path, tomograms=None, **options) -> TableRead
    write(path, table, voxel_size=None, tomograms=None, **options) -> Path

``tomograms`` maps a tomogram name to its :class:`TomogramGeometry` (size and Angstrom per voxel),
for formats whose positions are centred; ``read`` returns positions from the tomogram corner in
voxels of the grid the file states (:class:`TableRead`, ``voxel_size`` None where the file states
none); ``write`` takes positions in voxels of ``voxel_size`` (Angstrom). Readers refuse a malformed
row with ``file:line:column`` and never rescale: :func:`read_table` does that once.

A format is registered in :data:`FORMATS` only, with its name, file extensions, what its writer
needs and the format-specific keyword ``options`` (:data:`OPTIONS`) its reader and writer take;
:func:`read_table`, :func:`write_table` and :func:`convert_table` (``deepfinder convert``) find
it there by name, by extension, or for ``.star`` files by content (STOPGAP or RELION), and pass
the options through.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import io
from ..errors import InputError
from ..particles import ParticleTable
from . import copick, csv, dynamo, imod, star, stopgap, xml
from .geometry import SameForAll, TableRead, TomogramGeometry

__all__ = [
    "FORMATS",
    "OPTIONS",
    "FormatOption",
    "SameForAll",
    "TableFormat",
    "TableRead",
    "TomogramGeometry",
    "convert_table",
    "particles_of_tomogram",
    "read_table",
    "table_format",
    "tomograms_from",
    "write_table",
]

PathLike = str | os.PathLike
Tomograms = Mapping[str, TomogramGeometry]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FormatOption:
    """A keyword option that some formats' readers or writers take.

    Attributes
    ----------
    help : str
        What it does, for users (``deepfinder convert --help``, forms).
    switch : bool
        True for an on/off option, False for one that takes a text.
    """

    help: str
    switch: bool = False


#: The format-specific options, by keyword; :class:`TableFormat` says which format takes which.
OPTIONS: dict[str, FormatOption] = {
    "table_map": FormatOption(
        "Dynamo or STOPGAP input: the table map (.doc) naming the tomograms by index "
        "(default: the .doc of the table's name beside it; without one, names are the indices)"
    ),
    "subvolume_offset": FormatOption(
        "IMOD input: move the points by the origin of the sub-volume the model was drawn on (its "
        "MINX chunk), into the voxels of the full tomogram",
        switch=True,
    ),
    "user_id": FormatOption(
        "copick: the user whose picks are read (default: every user) or written (default: deepfinder)"
    ),
    "session_id": FormatOption(
        "copick: the session whose picks are read (default: every session) or written (default: 0, "
        "copick's mark of a tool's picks)"
    ),
}


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
    recognises : callable, optional
        Whether an existing file is of this format, for formats that share an extension with
        another (STOPGAP's ``.star``): consulted when reading, before the extension alone.
    folder : bool
        A folder stands for the format's file (a copick project for its config).
    one_tomogram : bool
        A file holds the particles of one tomogram (an IMOD model).
    read_options, write_options : tuple of str
        Keywords of :data:`OPTIONS` that the reader and the writer take.
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
    recognises: Callable[[PathLike], bool] | None = None
    folder: bool = False
    one_tomogram: bool = False
    read_options: tuple[str, ...] = ()
    write_options: tuple[str, ...] = ()
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
        TableFormat("dynamo", (".tbl",), dynamo.read, dynamo.write, read_options=("table_map",)),
        TableFormat(
            "stopgap",
            (".star",),
            stopgap.read,
            stopgap.write,
            recognises=stopgap.is_motive_list,
            read_options=("table_map",),
        ),
        TableFormat(
            "imod", (".mod",), imod.read, imod.write, one_tomogram=True, read_options=("subvolume_offset",)
        ),
        TableFormat(
            "copick",
            (".json",),
            copick.read,
            copick.write,
            folder=True,
            read_options=("user_id", "session_id"),
            write_options=("user_id", "session_id"),
            writer_needs_voxel_size=True,
        ),
    )
}


def table_format(path: PathLike, name: str | None = None, reading: bool = False) -> TableFormat:
    """The format called ``name``, else the one ``path`` is; :class:`InputError` if none.

    Without a name: a folder is a project's (copick); for ``reading`` an existing file, a format
    that recognises its content (STOPGAP's ``.star``) comes before the others of its extension;
    else the first format registered for the extension.
    """
    if name is not None:
        if name not in FORMATS:
            raise InputError(f"unknown table format {name!r}: use one of {', '.join(FORMATS)}")
        return FORMATS[name]
    if Path(path).is_dir():
        for table_format_ in FORMATS.values():
            if table_format_.folder:
                return table_format_
    suffix = Path(path).suffix.lower()
    candidates = [f for f in FORMATS.values() if suffix in f.extensions]
    if reading and Path(path).is_file():
        for table_format_ in candidates:
            if table_format_.recognises is not None and table_format_.recognises(path):
                return table_format_
    for table_format_ in candidates:
        if table_format_.recognises is None:
            return table_format_
    extensions = sorted({e for f in FORMATS.values() for e in f.extensions})
    raise InputError(
        f"{path}: unknown particle table extension {suffix or '(none)'!r}: use {', '.join(extensions)} "
        f"or a copick project's folder, or name the format ({', '.join(FORMATS)})"
    )


def read_table(
    path: PathLike,
    fmt: str | None = None,
    *,
    tomograms: Tomograms | None = None,
    coordinates_voxel_size: float | None = None,
    voxel_size: float | None = None,
    volume_shape_xyz: tuple[int, int, int] | None = None,
    **options,
) -> TableRead:
    """Read the particle table ``path`` (format ``fmt``, else by extension and content).

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
    **options
        Options of :data:`OPTIONS` that the format's reader takes (None: its default); one it
        does not take is refused.

    Returns
    -------
    TableRead
        Positions from the tomogram corner in voxels of its ``voxel_size``: ``voxel_size`` when
        given, else the file's grid (None for the project's tables, in the tomograms' voxels).
    """
    table_format_ = table_format(path, fmt, reading=True)
    given = _given(options, table_format_.read_options, f"reading {path} ({table_format_.name})")
    read = table_format_.read(path, tomograms=tomograms, **given)
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


def particles_of_tomogram(
    path: PathLike,
    tomogram: PathLike,
    *,
    coordinates_voxel_size: float | None = None,
    tomo_id: str | None = None,
) -> ParticleTable:
    """The particles of ``tomogram`` (an MRC file) in the table ``path``, in the tomogram's voxels.

    The rows named ``tomo_id``, else those named by the tomogram's file stem, else every row when
    the table names at most one tomogram; refused when the table has none of them. Positions are
    placed with the tomogram's size and voxel size (RELION 5's centred Angstrom) and rescaled from
    the table's pixel size, or ``coordinates_voxel_size`` where the table states none.
    """
    shape_xyz = io.read_volume(tomogram).shape[::-1]
    voxel_size = io.read_voxel_size(tomogram)
    read = read_table(
        path,
        tomograms=SameForAll(TomogramGeometry(shape_xyz, voxel_size or 1.0)),
        coordinates_voxel_size=coordinates_voxel_size,
        voxel_size=voxel_size or None,
        volume_shape_xyz=shape_xyz,
    )
    if read.voxel_size is not None and not voxel_size:
        raise InputError(
            f"{tomogram}: no voxel size in the MRC header, needed to place the positions of {path} "
            f"({read.voxel_size:g} A per pixel)"
        )
    table = read.particles
    names = set(table.tomo.tolist())
    wanted = tomo_id or Path(tomogram).stem
    if wanted in names:
        return table.of_tomogram(wanted)
    if not len(table):
        raise InputError(f"{path}: no particle in the table")
    if tomo_id is None and len(names) <= 1:
        return table
    raise InputError(
        f"{path}: no particle of {tomogram} (tomogram ids {sorted(names)[:5]}): "
        f"name it with --tomo-id or give one particle file per tomogram"
    )


def write_table(
    path: PathLike,
    table: ParticleTable,
    fmt: str | None = None,
    *,
    voxel_size: float | None = None,
    tomograms: Tomograms | None = None,
    **options,
) -> Path:
    """Write ``table`` (positions in voxels of ``voxel_size`` Angstrom) as ``fmt``, else by extension.

    ``tomograms`` gives each named tomogram's geometry, for formats with centred positions;
    ``options`` are those of :data:`OPTIONS` the format's writer takes (None: its default).
    """
    table_format_ = table_format(path, fmt)
    given = _given(options, table_format_.write_options, f"writing {path} ({table_format_.name})")
    if table_format_.writer_needs_voxel_size and not voxel_size:
        raise InputError(
            f"{path}: {table_format_.name} stores positions in Angstrom: give the voxel size of the positions"
        )
    if table_format_.writer_needs_tomograms and tomograms is None:
        raise InputError(
            f"{path}: {table_format_.name} positions are centred: give the tomograms' sizes "
            "(a RELION 5 tomograms.star, or sizes)"
        )
    return table_format_.write(path, table, voxel_size=voxel_size, tomograms=tomograms, **given)


def _given(options: Mapping, accepted: tuple[str, ...], doing: str) -> dict:
    """The ``options`` given (not None, not off); :class:`InputError` for one not ``accepted``."""
    given = {name: value for name, value in options.items() if value is not None and value is not False}
    refused = [name for name in given if name not in accepted]
    if refused:
        raise InputError(f"option(s) {', '.join(refused)} are not for {doing}: {_who_takes(refused)}")
    return given


def _who_takes(names: list[str]) -> str:
    """Which formats take each of the options ``names``, for messages."""
    takers = {
        name: [f.name for f in FORMATS.values() if name in f.read_options + f.write_options] for name in names
    }
    return "; ".join(f"{name} is for {', '.join(formats) or 'no format'}" for name, formats in takers.items())


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
    **options,
) -> tuple[Path, int]:
    """Convert the table ``source`` to ``target``; returns the file written and its row count.

    Positions are written in voxels of ``voxel_size`` (Angstrom), else of the source's pixel size,
    else of the tomograms' common voxel size (the project's tables state none). ``options`` (of
    :data:`OPTIONS`) go to the reader, the writer or both, as each takes them; one that neither
    takes is refused. Every row is written: rows of class 0, DeepFinder's background (Dynamo
    writes 0 for "no class"), are kept with a warning, and a format that cannot hold class 0
    (IMOD objects, copick labels) refuses them.
    """
    io.refuse_overwriting_inputs([target], [source])
    source_format = table_format(source, from_format, reading=True)
    target_format = table_format(target, to_format)
    _given(
        options,
        source_format.read_options + target_format.write_options,
        f"converting {source_format.name} to {target_format.name}",
    )
    read = read_table(
        source,
        source_format.name,
        tomograms=tomograms,
        coordinates_voxel_size=coordinates_voxel_size,
        **{name: value for name, value in options.items() if name in source_format.read_options},
    )
    output_voxel_size = voxel_size or read.voxel_size or _common_voxel_size(tomograms)
    particles = read.particles
    if read.voxel_size and output_voxel_size != read.voxel_size:
        particles = io.rescale_positions(particles, read.voxel_size, output_voxel_size, None, source)
    background = int(np.sum(particles.class_id == 0))
    if background:
        log.warning(
            "%s: %d of %d particles are of class 0, DeepFinder's background: written as class 0; "
            "give them a class of 1 or more before training on them",
            source,
            background,
            len(particles),
        )
    written = write_table(
        target,
        particles,
        target_format.name,
        voxel_size=output_voxel_size,
        tomograms=tomograms,
        **{name: value for name, value in options.items() if name in target_format.write_options},
    )
    return written, len(particles)


def _common_voxel_size(tomograms: Tomograms | None) -> float | None:
    if isinstance(tomograms, SameForAll):
        return tomograms.geometry.voxel_size
    sizes = {g.voxel_size for g in (tomograms or {}).values()}
    return sizes.pop() if len(sizes) == 1 else None
