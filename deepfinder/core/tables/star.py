"""RELION STAR particle files: RELION 5 and 4/3.1 tomography, Warp 1 and WarpTools 2 exports.

Reading finds the flavour from the labels:

- ``rlnCenteredCoordinate*Angst`` (RELION 5): Angstrom from the tomogram centre; the centre is
  ``(size / 2 - 1) * pixel size`` with the size in unbinned tilt-series pixels, as RELION 5's own
  picker converts (checked on a pair of RELION 5 files holding the same picks in both units), so
  the tomograms' sizes are needed (a RELION 5 ``tomograms.star``, :func:`read_tomograms`).
- ``rlnCoordinate*`` (RELION 4, 3.1, Warp, WarpTools): pixels from the corner, of the optics
  group's ``rlnTomoTiltSeriesPixelSize``; of ``rlnImagePixelSize`` for WarpTools 2 (tomogram names
  ending in ``.tomostar``: its coordinates are at the export's pixel size); of
  ``rlnDetectorPixelSize / rlnMagnification`` for RELION 3.0 style files (Warp 1). A file that
  gives none is read with its pixel size unknown: the caller must give it.
- ``rlnOrigin*Angst`` (``rlnOrigin*`` in pixels for RELION 3.0) shifts are applied as RELION
  does: position minus the shift turned by the subtomogram orientation.
- Orientation: ``rlnTomoSubtomogram*`` (priors of pseudo-subtomograms) composed with
  ``rlnAngle*``; tomogram names from ``rlnTomoName`` (``.tomostar`` dropped) or, in Warp 1
  files, from ``rlnMicrographName``'s file name (Warp's ``_<pixel size>Apx`` suffix dropped).

WarpTools 2 builds were seen writing angles in degrees times 180/pi; such a file (an angle beyond
360 degrees) is read with a warning and its angles divided back.

The parser is ours, not emtable's or starfile's: emtable decides whether to honour quotes from
a table's first row only, drops values beyond the labels silently and names no line, and neither
library reports a malformed row with its file, line and column, which is what a user needs to
fix a table by hand.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..io import atomic_output
from ..particles import ParticleTable, euler_angles
from .geometry import TableRead, TomogramGeometry
from .values import number, whole_numbers

log = logging.getLogger(__name__)

RELION_VERSION = "# version 50001"
# RELION 5 and WarpTools name a tomogram's tilt series after its .tomostar file.
TOMOSTAR = ".tomostar"
WARP_PIXEL_SUFFIX = re.compile(r"_\d+(\.\d+)?Apx$")
DEGREES_PER_RADIAN = 180 / math.pi


@dataclass
class Row:
    """One data row: its line number, and each value with the column (character, from 1) it starts at."""

    line: int
    values: list[tuple[int, str]]


@dataclass
class Block:
    """A ``data_`` block: a loop (labels and rows) or label-value pairs (one row)."""

    name: str
    labels: list[str]
    rows: list[Row]
    path: str

    def has(self, label: str) -> bool:
        return label in self.labels

    def wheres(self, label: str) -> list[str]:
        """``file:line:column`` of each row's value of ``label``, for messages."""
        index = self.labels.index(label)
        return [f"{self.path}:{row.line}:{row.values[index][0]}" for row in self.rows]

    def texts(self, label: str) -> list[str]:
        index = self.labels.index(label)
        return [row.values[index][1] for row in self.rows]

    def numbers(self, label: str, default: float | None = None) -> np.ndarray:
        """The column ``label`` as finite numbers (``default`` where the column is absent)."""
        if label not in self.labels:
            if default is None:
                raise InputError(f"{self.path}: block data_{self.name} has no _{label} column")
            return np.full(len(self.rows), default, dtype=float)
        index = self.labels.index(label)
        values = []
        for row in self.rows:
            column, text = row.values[index]
            values.append(number(text, f"{self.path}:{row.line}:{column}: _{label}"))
        return np.array(values, dtype=float)


def read_blocks(path: str | os.PathLike) -> dict[str, Block]:
    """Every block of a STAR file, by name (``""`` for a nameless ``data_``).

    A row with too few or too many values, or with a quote left open, raises :class:`InputError`
    naming ``file:line:column``. A UTF-8 byte-order mark and CRLF line ends are accepted.
    """
    path = str(path)
    with open(path, encoding="utf-8-sig") as handle:
        lines = handle.read().splitlines()
    blocks: dict[str, Block] = {}
    block: Block | None = None
    in_loop = False
    for number_, line in enumerate(lines, start=1):
        tokens = _tokens(line, path, number_)
        if not tokens:
            continue
        # A quoted first value is data, whatever it starts with.
        first = "" if line.lstrip()[0] in "'\"" else tokens[0][1]
        if first.startswith("data_"):
            block = Block(first[5:], [], [], path)
            blocks[block.name] = block
            in_loop = False
        elif block is None:
            raise InputError(f"{path}:{number_}:{tokens[0][0]}: {tokens[0][1]!r} before any data_ block")
        elif first == "loop_":
            in_loop = True
        elif first.startswith("_") and in_loop:
            if block.rows:
                raise InputError(f"{path}:{number_}: label {first} after the rows of data_{block.name}")
            block.labels.append(first[1:])
        elif first.startswith("_"):
            if len(tokens) != 2:
                raise InputError(f"{path}:{number_}:{tokens[0][0]}: expected '_label value'")
            block.labels.append(first[1:])
            if not block.rows:
                block.rows.append(Row(number_, []))
            block.rows[0].values.append(tokens[1])
        elif in_loop and block.labels:
            if len(tokens) != len(block.labels):
                column = tokens[len(block.labels)][0] if len(tokens) > len(block.labels) else len(line) + 1
                raise InputError(
                    f"{path}:{number_}:{column}: {len(tokens)} values for the {len(block.labels)} "
                    f"labels of data_{block.name}"
                )
            block.rows.append(Row(number_, tokens))
        else:
            raise InputError(
                f"{path}:{number_}:{tokens[0][0]}: {tokens[0][1]!r} is neither a label nor in a loop"
            )
    if not blocks:
        raise InputError(f"{path}: no data_ block: not a STAR file")
    return blocks


def _tokens(line: str, path: str, line_number: int) -> list[tuple[int, str]]:
    """The values of a line with their columns; a quoted value ends at its quote followed by a
    blank or the line's end (STAR's rule, so ``'it's'`` is one value)."""
    tokens = []
    i, n = 0, len(line)
    while i < n:
        if line[i].isspace():
            i += 1
            continue
        if line[i] == "#":
            break
        if line[i] in "'\"":
            quote, start = line[i], i
            end = i + 1
            while True:
                end = line.find(quote, end)
                if end == -1:
                    raise InputError(
                        f"{path}:{line_number}:{start + 1}: quote {quote} left open: close it or remove it"
                    )
                if end + 1 == n or line[end + 1].isspace():
                    break
                end += 1
            tokens.append((start + 1, line[start + 1 : end]))
            i = end + 1
        else:
            start = i
            while i < n and not line[i].isspace():
                i += 1
            tokens.append((start + 1, line[start:i]))
    return tokens


def read_tomograms(path: str | os.PathLike) -> dict[str, TomogramGeometry]:
    """Sizes (unbinned tilt-series pixels) and pixel sizes of the tomograms of a RELION 5 (or
    WarpTools) ``tomograms.star``, by tomogram name (``.tomostar`` dropped)."""
    blocks = read_blocks(path)
    table = blocks.get("global")
    if table is None or not table.has("rlnTomoSizeX"):
        raise InputError(f"{path}: no data_global block with _rlnTomoSizeX: not a RELION 5 tomograms.star")
    sizes = np.stack([table.numbers(f"rlnTomoSize{axis}") for axis in "XYZ"], axis=1)
    pixel_sizes = table.numbers("rlnTomoTiltSeriesPixelSize")
    return {
        _tomogram_name(name): TomogramGeometry(tuple(int(v) for v in size), float(pixel_size))
        for name, size, pixel_size in zip(table.texts("rlnTomoName"), sizes, pixel_sizes)
    }


def read(
    path: str | os.PathLike,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
) -> TableRead:
    """Read a RELION, Warp or WarpTools particle file (see the module's description).

    ``tomograms`` gives the size and pixel size of each tomogram named in the file, needed for
    RELION 5's centred coordinates. Returns positions from the tomogram corner in pixels of the
    file's pixel size (or in Angstrom, a 1 A grid, where its tomograms or optics groups differ),
    or in the file's pixels with ``voxel_size`` None where the file states no pixel size.
    """
    blocks = read_blocks(path)
    particles = _particles_block(blocks, path)
    rows = len(particles.rows)
    tomo = _tomogram_names(particles)
    pixel_sizes = _pixel_sizes(blocks, particles, path)
    part_rotation = _rotations_from_relion(_angles(particles, "rlnAngle", path))
    sub_rotation = _rotations_from_relion(_angles(particles, "rlnTomoSubtomogram", path))
    if particles.has("rlnCenteredCoordinateXAngst"):
        geometries = _geometries(tomograms, tomo, path)
        centres = np.array([_centre_angstrom(g) for g in geometries]).reshape(-1, 3)
        angstrom = np.stack([particles.numbers(f"rlnCenteredCoordinate{a}Angst") for a in "XYZ"], 1) + centres
        if pixel_sizes is None:
            pixel_sizes = np.array([g.voxel_size for g in geometries])
    else:
        pixels = np.stack([particles.numbers(f"rlnCoordinate{a}") for a in "XYZ"], 1)
        if pixel_sizes is None:
            if _origins(particles, None).any():
                raise InputError(
                    f"{path}: positions in pixels with rlnOrigin shifts, but no pixel size in the file: "
                    "give the coordinates' voxel size"
                )
            return _table(particles, tomo, pixels, sub_rotation @ part_rotation, None)
        angstrom = pixels * pixel_sizes[:, None]
    shifts = _origins(particles, pixel_sizes)
    angstrom = angstrom - np.einsum("nij,nj->ni", sub_rotation, shifts)
    grid = np.unique(pixel_sizes) if rows else np.array([1.0])
    voxel_size = float(grid[0]) if len(grid) == 1 else 1.0
    return _table(particles, tomo, angstrom / voxel_size, sub_rotation @ part_rotation, voxel_size)


def _table(block: Block, tomo: list[str], xyz, rotation, voxel_size: float | None) -> TableRead:
    class_id = block.numbers("rlnClassNumber", 1.0)
    if block.has("rlnClassNumber"):
        class_id = whole_numbers(class_id, block.wheres("rlnClassNumber"), "class numbers")
    particles = ParticleTable(
        tomo=np.array(tomo, dtype=str),
        class_id=np.asarray(class_id, dtype=int),
        xyz=np.asarray(xyz, dtype=float).reshape(-1, 3),
        rotation=rotation,
        score=block.numbers("rlnAutopickFigureOfMerit", np.nan),
    )
    return TableRead(particles, voxel_size)


def _particles_block(blocks: dict[str, Block], path) -> Block:
    """``data_particles``, else the last block with coordinates (Warp and RELION 3.0 name none)."""
    if "particles" in blocks:
        return blocks["particles"]
    with_positions = [
        b for b in blocks.values() if b.has("rlnCoordinateX") or b.has("rlnCenteredCoordinateXAngst")
    ]
    if not with_positions:
        raise InputError(
            f"{path}: no block with _rlnCoordinateX or _rlnCenteredCoordinateXAngst: not a particle file"
        )
    return with_positions[-1]


def _tomogram_name(text: str) -> str:
    return text[: -len(TOMOSTAR)] if text.endswith(TOMOSTAR) else text


def _tomogram_names(block: Block) -> list[str]:
    if block.has("rlnTomoName"):
        return [_tomogram_name(name) for name in block.texts("rlnTomoName")]
    if block.has("rlnMicrographName"):
        return [WARP_PIXEL_SUFFIX.sub("", Path(name).stem) for name in block.texts("rlnMicrographName")]
    return [""] * len(block.rows)


def _is_warptools(block: Block) -> bool:
    return block.has("rlnTomoName") and any(name.endswith(TOMOSTAR) for name in block.texts("rlnTomoName"))


def _pixel_sizes(blocks: dict[str, Block], particles: Block, path) -> np.ndarray | None:
    """Angstrom per pixel of each row's rlnCoordinate values, or None where the file gives none."""
    optics = blocks.get("optics")
    label = "rlnImagePixelSize" if _is_warptools(particles) else "rlnTomoTiltSeriesPixelSize"
    if optics is not None and optics.has(label):
        by_group = dict(zip(optics.numbers("rlnOpticsGroup", 1.0), optics.numbers(label)))
        groups = particles.numbers("rlnOpticsGroup", 1.0)
        unknown = sorted(set(groups) - set(by_group))
        if unknown:
            raise InputError(f"{path}: optics group {unknown[0]:g} of the particles is not in data_optics")
        return np.array([by_group[g] for g in groups], dtype=float)
    if particles.has("rlnDetectorPixelSize") and particles.has("rlnMagnification"):
        # RELION 3.0: the detector pixel in micrometres over the magnification, in Angstrom.
        return particles.numbers("rlnDetectorPixelSize") * 1e4 / particles.numbers("rlnMagnification")
    return None


def _geometries(tomograms, tomo: list[str], path) -> list[TomogramGeometry]:
    unknown = sorted({name for name in tomo if tomograms is None or name not in tomograms})
    if unknown:
        raise InputError(
            f"{path}: positions are centred (RELION 5): the size of tomogram(s) {', '.join(unknown[:5])} "
            "is needed: give their tomograms.star or sizes"
        )
    return [tomograms[name] for name in tomo]


def _centre_angstrom(geometry: TomogramGeometry) -> np.ndarray:
    return (np.asarray(geometry.size_xyz, dtype=float) / 2 - 1) * geometry.voxel_size


def _origins(block: Block, pixel_sizes: np.ndarray | None) -> np.ndarray:
    """The rlnOrigin shifts in Angstrom (RELION 3.0's, in pixels, need ``pixel_sizes``)."""
    if block.has("rlnOriginXAngst"):
        return np.stack([block.numbers(f"rlnOrigin{a}Angst") for a in "XYZ"], axis=1)
    if block.has("rlnOriginX"):
        pixels = np.stack([block.numbers(f"rlnOrigin{a}", 0.0) for a in "XYZ"], axis=1)
        return pixels if pixel_sizes is None else pixels * pixel_sizes[:, None]
    return np.zeros((len(block.rows), 3))


def _angles(block: Block, prefix: str, path) -> np.ndarray:
    angles = np.stack([block.numbers(f"{prefix}{name}", 0.0) for name in ("Rot", "Tilt", "Psi")], axis=1)
    if _is_warptools(block) and len(angles) and np.abs(angles).max() > 360:
        log.warning(
            "%s: angles beyond 360 degrees (up to %.1f): read as degrees x 180/pi, a known WarpTools "
            "defect, and divided back; check the orientations",
            path,
            np.abs(angles).max(),
        )
        angles = angles / DEGREES_PER_RADIAN
    return angles.reshape(-1, 3)


def _relion_angles(rotation: np.ndarray) -> np.ndarray:
    """(rot, tilt, psi) of RELION: ``Rz(rot) @ Ry(tilt) @ Rz(psi)`` (intrinsic ZYZ) is the
    inverse of ``rotation``, as Scipion's reliontomo converts coordinate matrices."""
    return euler_angles(np.transpose(rotation, (0, 2, 1)), "ZYZ")


def _rotations_from_relion(angles: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_relion_angles`: RELION's own matrix of the angles."""
    if not len(angles):
        return np.empty((0, 3, 3))
    inverse = Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix()
    return np.transpose(inverse, (0, 2, 1))


# --------------------------------------------------------------------------- writing


def write_relion5(
    path: str | os.PathLike,
    table: ParticleTable,
    voxel_size: float | None = None,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
) -> Path:
    """RELION 5 particles: ``data_optics`` and ``data_particles`` with ``rlnCenteredCoordinate*Angst``.

    ``table``'s positions are in voxels of ``voxel_size`` (Angstrom); ``tomograms`` gives each
    named tomogram's size for the centring (the tilt-series size and pixel size of a RELION 5
    tomograms.star, or the tomogram's own). The optics group's pixel size is the tomograms'.
    """
    if not voxel_size:
        raise InputError(f"{path}: RELION 5 positions are in Angstrom: give the positions' voxel size")
    geometries = _geometries(tomograms, list(table.tomo), path)
    centres = np.array([_centre_angstrom(g) for g in geometries]).reshape(-1, 3)
    centred = table.xyz * voxel_size - centres
    pixel_sizes = {g.voxel_size for g in geometries} or {voxel_size}
    pixel_size = pixel_sizes.pop() if len(pixel_sizes) == 1 else voxel_size
    optics = (
        ["rlnOpticsGroup", "rlnOpticsGroupName", "rlnTomoTiltSeriesPixelSize"],
        [["1", "opticsGroup1", f"{pixel_size:.6f}"]],
    )
    labels = [
        "rlnTomoName",
        "rlnCenteredCoordinateXAngst",
        "rlnCenteredCoordinateYAngst",
        "rlnCenteredCoordinateZAngst",
    ]
    return _write(path, table, labels, centred, {"optics": optics})


def write_relion4(
    path: str | os.PathLike,
    table: ParticleTable,
    voxel_size: float | None = None,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
) -> Path:
    """RELION 4 particles: ``rlnCoordinate*`` in voxels from the tomogram corner; with a
    ``data_optics`` block giving ``voxel_size`` as the tilt-series pixel size when it is known."""
    blocks = {}
    if voxel_size:
        blocks["optics"] = (
            ["rlnOpticsGroup", "rlnOpticsGroupName", "rlnTomoTiltSeriesPixelSize"],
            [["1", "opticsGroup1", f"{voxel_size:.6f}"]],
        )
    labels = ["rlnTomoName", "rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]
    return _write(path, table, labels, table.xyz, blocks)


def _write(path, table: ParticleTable, labels: list[str], coordinates: np.ndarray, blocks: dict) -> Path:
    angles = _relion_angles(table.rotation)
    labels = labels + [
        "rlnAngleRot",
        "rlnAngleTilt",
        "rlnAnglePsi",
        "rlnClassNumber",
    ]
    # STAR has no empty value: the score column is written only when every score is known.
    scores = bool(np.isfinite(table.score).all())
    if scores:
        labels.append("rlnAutopickFigureOfMerit")
    rows = []
    for i in range(len(table)):
        rows.append(
            [
                quoted(str(table.tomo[i])),
                *(f"{v:.4f}" for v in coordinates[i]),
                *(f"{v:.4f}" for v in angles[i]),
                str(int(table.class_id[i])),
                *([f"{table.score[i]:.6g}"] if scores else []),
            ]
        )
    if "optics" in blocks:
        labels.append("rlnOpticsGroup")
        rows = [row + ["1"] for row in rows]
    return write_blocks(path, {**blocks, "particles": (labels, rows)}, RELION_VERSION)


def write_blocks(
    path: str | os.PathLike,
    blocks: Mapping[str, tuple[list[str], list[list[str]]]],
    version: str | None = None,
) -> Path:
    """Write STAR loops, atomically: ``blocks`` maps a block name to its labels and rows of values.

    Values are written as given (quote them with :func:`quoted` where they may hold blanks).
    With RELION's ``version`` line, each block starts with it and labels are numbered as RELION
    numbers them; without, labels stand alone, as STOPGAP writes them.
    """
    text = []
    for name, (labels, rows) in blocks.items():
        text += ["", *([version, ""] if version else []), f"data_{name}", "", "loop_"]
        text += [f"_{label} #{i + 1}" if version else f"_{label}" for i, label in enumerate(labels)]
        text += ["\t".join(row) for row in rows]
        text.append("")
    with atomic_output(path) as temporary:
        temporary.write_text("\n".join(text) + "\n", encoding="utf-8")
    return Path(path)


def quoted(value: str) -> str:
    """``value`` as a STAR value: quoted where it is empty, holds a blank or would read as syntax."""
    if (
        value
        and not re.search(r"\s", value)
        and not re.match(r"['\"#_$]|(data|loop|save|stop|global)_", value)
    ):
        return value
    if '"' not in value:
        return f'"{value}"'
    if "'" not in value:
        return f"'{value}'"
    raise InputError(f"tomogram name {value!r} holds both quote characters: STAR cannot store it, rename it")
