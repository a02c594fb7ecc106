"""Reading and writing volumes (MRC) and particle tables (CSV, XML object lists, RELION STAR).

Every writer replaces its file whole or not at all (:func:`atomic_output`), and
commands refuse outputs that would overwrite their inputs (:func:`refuse_overwriting_inputs`).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import logging
import os
import re
import stat
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import mrcfile
import mrcfile.utils
import numpy as np
from scipy.spatial.transform import Rotation

from .errors import InputError
from .particles import ParticleTable, euler_angles, rotations_from_euler_zxz

PathLike = str | os.PathLike
ShapeXYZ = tuple[int, int, int]
# Share of particle positions outside the volume above which their voxel size is doubted.
OUTSIDE_WARNING_FRACTION = 0.05

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- output files


class OutputOverwritesInput(InputError):
    """An output path names an input file (or another output): nothing was written."""


def refuse_overwriting_inputs(outputs: Iterable[PathLike | None], inputs: Iterable[PathLike | None]) -> None:
    """Raise :class:`OutputOverwritesInput` if an output is an input or another output.

    Paths are compared as the files they name: through symbolic links and, for
    files that exist, as the same file on disk (which catches hard links too).
    ``None`` entries (optional paths not given) are skipped. Call it before any
    work, so that a mistyped output path costs nothing.
    """
    sources = {_file_identity(path): path for path in inputs if path}
    written: dict = {}
    for output in (path for path in outputs if path):
        identity = _file_identity(output)
        if identity in sources:
            raise OutputOverwritesInput(
                f"output {output} would overwrite the input {sources[identity]}: choose another output path"
            )
        if identity in written:
            raise OutputOverwritesInput(
                f"outputs {written[identity]} and {output} are the same file: choose different output paths"
            )
        written[identity] = output


def _file_identity(path: PathLike):
    """The file ``path`` names: its device and inode when it exists, else its resolved path."""
    resolved = os.path.realpath(path)
    try:
        status = os.stat(resolved)
    except OSError:
        return resolved
    return status.st_dev, status.st_ino


@contextlib.contextmanager
def atomic_output(path: PathLike, suffix: str = "") -> Iterator[Path]:
    """A temporary path to write ``path``'s content to, renamed over ``path`` when the block ends.

    When the block raises (an interrupt too), the temporary is removed and
    ``path`` is left as it was: readers see the previous complete file or the
    new complete one, never a partial one. The temporary is
    ``.<name>.tmp-<pid><suffix>`` in the folder of the file ``path`` resolves to
    (through links), so globs on the target's extension do not see it;
    ``suffix`` is for writers that insist on an extension. One left by a killed
    process is removed when the same file is next written. Several files are
    replaced together by nesting blocks (or a :class:`contextlib.ExitStack`):
    the first entered is renamed last.

    A replaced file keeps its permissions (a new one gets the umask's). The
    temporary reaches the disk before the rename, so that a power cut leaves
    the previous file or the new one, not an empty one. A write error without
    a file name (a full disk: ``ENOSPC``, a file-size limit: ``EFBIG``) is
    raised again naming ``path``.
    """
    Path(path).parent.mkdir(parents=True, exist_ok=True)  # an error names the path as given
    target = Path(os.path.realpath(path))
    _remove_abandoned_temporaries(target)
    temporary = target.with_name(f".{target.name}.tmp-{os.getpid()}{suffix}")
    try:
        yield temporary
        with contextlib.suppress(FileNotFoundError):
            os.chmod(temporary, stat.S_IMODE(os.stat(target).st_mode))
        _sync(temporary)
        os.replace(temporary, target)
        _sync(target.parent)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if error.errno and error.filename in (None, str(temporary)):
            raise OSError(error.errno, os.strerror(error.errno), str(path)) from error
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _sync(path: Path) -> None:
    """Wait until the file or folder ``path`` is on the disk."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_abandoned_temporaries(target: Path) -> None:
    """Remove temporaries of ``target`` written by processes that no longer run."""
    prefix = f".{target.name}.tmp-"
    for name in os.listdir(target.parent):
        owner = re.match(r"\d+", name[len(prefix) :]) if name.startswith(prefix) else None
        if owner and not _process_runs(int(owner.group())):
            log.info("removing %s, left by an interrupted run", target.parent / name)
            (target.parent / name).unlink(missing_ok=True)


def _process_runs(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


# --------------------------------------------------------------------------- volumes


def read_volume(path: PathLike, mmap: bool = True) -> np.ndarray:
    """Read an MRC volume as a (z, y, x) array, memory-mapped by default.

    Real-world headers (e.g. a zero machine stamp) are tolerated with a
    warning; a file that is not MRC at all, or shorter than its header says,
    raises :class:`InputError`.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"Volume file not found: {path}")
    _check_mrc_size(path)
    opener = mrcfile.mmap if mmap else mrcfile.open
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            mrc = opener(path, mode="r")
    except (ValueError, RuntimeWarning) as strict_error:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # reported once, below
                mrc = opener(path, mode="r", permissive=True)
        except ValueError as error:
            raise InputError(f"{path} is not a readable MRC file: {error}") from error
        if mrc.data is None:
            raise InputError(f"{path} is not a readable MRC file: {strict_error}") from strict_error
        _warn_once(path, f"{path}: non-standard MRC header ({strict_error}); read permissively")
    data = mrc.data
    if data is None or data.ndim not in (2, 3):
        raise InputError(f"{path} holds no 3D volume")
    return data if data.ndim == 3 else data[np.newaxis]


# The files whose header was warned about: a command reads a file several times (its shape,
# voxel size, voxels), its user needs to hear of it once.
_warned_headers: set[str] = set()


def _warn_once(path: Path, message: str) -> None:
    """Warn ``message`` about the file ``path`` unless this process already did."""
    key = os.path.realpath(path)
    if key not in _warned_headers:
        _warned_headers.add(key)
        warnings.warn(message, stacklevel=3)


@contextlib.contextmanager
def _open_header(path: PathLike) -> Iterator[mrcfile.mrcfile.MrcFile]:
    """The MRC file ``path`` opened for its header only, its anomalies tolerated in silence
    (:func:`read_volume` reports them); :class:`InputError` naming the file when it has no header."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mrc = mrcfile.open(path, mode="r", header_only=True, permissive=True)
    except FileNotFoundError:
        raise
    except (ValueError, OSError, EOFError) as error:
        raise InputError(
            f"{path} is not a readable MRC file (no MRC header, or a damaged one: {error})"
        ) from error
    with mrc:
        yield mrc


def _check_mrc_size(path: Path) -> None:
    """Refuse an MRC file whose header is unreadable, whose mode is unknown or that is shorter
    than its header says (a truncated copy)."""
    with _open_header(path) as mrc:
        header = mrc.header
    mode = int(header.mode)
    if mode in (3, 4):
        raise InputError(
            f"{path}: MRC mode {mode} holds complex numbers (a Fourier transform), not a volume: "
            "give a volume of mode 0, 1, 2, 6 or 12"
        )
    try:
        item_size = mrcfile.utils.dtype_from_mode(mode).itemsize
    except ValueError as error:
        raise InputError(f"{path}: MRC mode {mode} is not supported (use mode 0, 1, 2, 6 or 12)") from error
    shape = (int(header.nz), int(header.ny), int(header.nx))
    if min(shape) < 1:
        raise InputError(f"{path}: the MRC header gives an empty volume of {shape[2]}x{shape[1]}x{shape[0]}")
    expected = 1024 + int(header.nsymbt) + item_size * int(np.prod(shape, dtype=np.int64))
    size = path.stat().st_size
    if size < expected:
        raise InputError(
            f"{path} is truncated: {size} bytes, but its header describes {shape[2]}x{shape[1]}x{shape[0]} "
            f"voxels of MRC mode {mode} ({expected} bytes)"
        )


def read_voxel_size(path: PathLike) -> float:
    """Voxel size in Angstrom stored in an MRC header (x axis); 0 when unset.

    :class:`InputError` naming the file when it has no MRC header.
    """
    with _open_header(path) as mrc:
        return float(mrc.voxel_size.x)


def warn_if_other_sampling(path: PathLike, reference_path: PathLike) -> None:
    """Warn when the MRC headers of ``path`` and ``reference_path`` give different voxel sizes.

    For maps that must lie on the same voxel grid (a label map and its tomogram); an unset
    voxel size (0) is not compared.
    """
    size, reference_size = read_voxel_size(path), read_voxel_size(reference_path)
    if size and reference_size and not np.isclose(size, reference_size, rtol=0.01):
        warnings.warn(
            f"{path} has {size:g} A/voxel but {reference_path} {reference_size:g} A/voxel: "
            "are they on the same voxel grid?",
            stacklevel=2,
        )


def write_volume(path: PathLike, data: np.ndarray, voxel_size: float = 1.0) -> Path:
    """Write a (z, y, x) array as MRC with ``voxel_size`` (Angstrom) in the header.

    float64 is stored as float32 and int64 as int16/int32 (MRC has no 64-bit modes).
    """
    path = Path(path)
    data = np.asarray(data)
    if data.dtype == np.float64:
        data = data.astype(np.float32)
    elif data.dtype == np.bool_:
        data = data.astype(np.int8)
    elif data.dtype in (np.int64, np.int32, np.uint32):
        data = data.astype(np.int16 if data.size == 0 or np.abs(data).max() < 2**15 else np.float32)
    with atomic_output(path) as temporary, mrcfile.new(temporary, overwrite=True) as mrc:
        mrc.set_data(data)
        mrc.voxel_size = voxel_size
    return path


def create_volume(path: PathLike, shape: tuple[int, int, int], dtype, voxel_size: float = 1.0):
    """Create an MRC file of ``shape`` (z, y, x) and return it open, memory-mapped for writing.

    Used to write outputs slab by slab so memory stays bounded. Close the
    returned object (or use it as a context manager) when done. The file is
    written in place: create it at a temporary path of :func:`atomic_output`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mrc = mrcfile.new_mmap(path, shape=tuple(shape), mrc_mode=_mrc_mode(dtype), overwrite=True)
    mrc.voxel_size = voxel_size
    return mrc


def _mrc_mode(dtype) -> int:
    modes = {
        np.dtype(np.int8): 0,
        np.dtype(np.int16): 1,
        np.dtype(np.float32): 2,
        np.dtype(np.uint8): 6,
        np.dtype(np.uint16): 6,
        np.dtype(np.float16): 12,
    }
    try:
        return modes[np.dtype(dtype)]
    except KeyError as error:
        raise ValueError(f"MRC cannot store {np.dtype(dtype)}") from error


# --------------------------------------------------------------------------- particle tables

CSV_COLUMNS = ("tomo", "class_id", "x", "y", "z", "phi", "theta", "psi", "score")


def write_particles_csv(path: PathLike, table: ParticleTable) -> Path:
    """CSV with columns tomo, class_id, x, y, z (voxels), phi, theta, psi (ZXZ, degrees), score."""
    path = Path(path)
    angles = table.euler_zxz()
    with atomic_output(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        for i in range(len(table)):
            writer.writerow(
                [
                    table.tomo[i],
                    int(table.class_id[i]),
                    *(f"{v:.4f}" for v in table.xyz[i]),
                    *(f"{v:.4f}" for v in angles[i]),
                    f"{table.score[i]:.6g}",
                ]
            )
    return path


def read_particles_csv(path: PathLike) -> ParticleTable:
    """Read a table written by :func:`write_particles_csv` (angles and score optional).

    A missing column, a missing position or class, or a value that is not a number
    raises :class:`InputError` naming the file, the line and the column.
    """
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        rows = [(reader.line_num, row) for row in reader]
        columns = reader.fieldnames or []
    missing = {"class_id", "x", "y", "z"} - set(columns)
    if missing:
        raise InputError(
            f"{path}: missing column(s) {', '.join(sorted(missing))}; "
            f"expected columns {', '.join(CSV_COLUMNS)}"
        )
    if not rows:
        return ParticleTable.empty()

    def column(name, default=None):
        values = []
        for line, row in rows:
            text = (row.get(name) or "").strip()
            if not text:
                if default is None:
                    raise InputError(f"{path}:{line}: column {name}: missing value")
                values.append(default)
                continue
            try:
                values.append(float(text))
            except ValueError:
                raise InputError(f"{path}:{line}: column {name}: {text!r} is not a number") from None
        return np.array(values, dtype=float)

    class_id = column("class_id")
    if np.any(class_id != np.round(class_id)):
        line = rows[int(np.flatnonzero(class_id != np.round(class_id))[0])][0]
        raise InputError(f"{path}:{line}: column class_id: class ids are whole numbers")
    return ParticleTable(
        tomo=np.array([row.get("tomo") or "" for _, row in rows]),
        class_id=class_id.astype(int),
        xyz=np.stack([column("x"), column("y"), column("z")], axis=1),
        rotation=rotations_from_euler_zxz(column("phi", 0.0), column("theta", 0.0), column("psi", 0.0)),
        score=column("score", np.nan),
    )


def write_particles_xml(path: PathLike, table: ParticleTable) -> Path:
    """DeepFinder object list: ``<objlist><object tomo_idx class_label x y z phi psi the/>``.

    ``tomo_idx`` is the tomogram identifier as given; ``cluster_size`` carries the score.
    """
    path = Path(path)
    root = ET.Element("objlist")
    angles = table.euler_zxz()
    for i in range(len(table)):
        phi, the, psi = angles[i]
        attributes = {
            "tomo_idx": str(table.tomo[i]),
            "class_label": str(int(table.class_id[i])),
            "x": f"{table.xyz[i, 0]:.4f}",
            "y": f"{table.xyz[i, 1]:.4f}",
            "z": f"{table.xyz[i, 2]:.4f}",
            "phi": f"{phi:.4f}",
            "psi": f"{psi:.4f}",
            "the": f"{the:.4f}",
        }
        if not np.isnan(table.score[i]):
            attributes["cluster_size"] = f"{table.score[i]:.6g}"
        ET.SubElement(root, "object", attributes)
    with atomic_output(path) as temporary:
        ET.ElementTree(root).write(temporary)
    return path


def read_particles_xml(path: PathLike) -> ParticleTable:
    """Read a DeepFinder/SHREC object list (angles phi, psi, the in degrees, ZXZ).

    A file that is not XML, or an object without a position or with a value that is not a
    number, raises :class:`InputError` naming the file and the object (1 for the first).
    """
    try:
        objects = ET.parse(path).getroot().findall("object")
    except ET.ParseError as error:
        raise InputError(f"{path}: not a readable XML object list ({error})") from None
    if not objects:
        return ParticleTable.empty()

    def attribute(name, default=None):
        values = []
        for number, element in enumerate(objects, start=1):
            text = (element.get(name) or "").strip()
            if not text:
                if default is None:
                    raise InputError(f"{path}: object {number}: attribute {name}: missing value")
                values.append(default)
                continue
            try:
                values.append(float(text))
            except ValueError:
                raise InputError(
                    f"{path}: object {number}: attribute {name}: {text!r} is not a number"
                ) from None
        return np.array(values, dtype=float)

    return ParticleTable(
        tomo=np.array([o.get("tomo_idx", "0") for o in objects]),
        class_id=attribute("class_label").astype(int),
        xyz=np.stack([attribute("x"), attribute("y"), attribute("z")], axis=1),
        rotation=rotations_from_euler_zxz(
            attribute("phi", 0.0), attribute("the", 0.0), attribute("psi", 0.0)
        ),
        score=attribute("cluster_size", np.nan),
    )


def rescale_positions(
    table: ParticleTable,
    coordinates_voxel_size: float,
    voxel_size: float,
    volume_shape_xyz: ShapeXYZ,
    source: PathLike = "",
) -> ParticleTable:
    """``table`` with positions given in voxels of ``coordinates_voxel_size`` (Angstrom) moved to
    voxels of ``voxel_size``, the tomogram's (Angstrom).

    Positions measured from the volume corner, as in the tables (voxel centres at whole numbers).
    Logs a warning when more than :data:`OUTSIDE_WARNING_FRACTION` of them fall outside a
    volume of ``volume_shape_xyz`` voxels: the coordinates' voxel size is then likely wrong.
    """
    if coordinates_voxel_size <= 0 or voxel_size <= 0:
        raise InputError(f"voxel sizes must be > 0 Angstrom, got {coordinates_voxel_size} and {voxel_size}")
    xyz = table.xyz * (coordinates_voxel_size / voxel_size)
    size = np.asarray(volume_shape_xyz, dtype=float)
    outside = np.any((np.rint(xyz) < 0) | (np.rint(xyz) >= size), axis=1)
    if len(xyz) and outside.mean() > OUTSIDE_WARNING_FRACTION:
        logging.getLogger(__name__).warning(
            "%s: %d of %d positions lie outside the tomogram (x, y, z) = %s at %g A/voxel "
            "(%g A/voxel in the tomogram): is the coordinates' voxel size right?",
            source or "particle table",
            int(outside.sum()),
            len(xyz),
            tuple(int(n) for n in size),
            coordinates_voxel_size,
            voxel_size,
        )
    return dataclasses.replace(table, xyz=xyz)


STAR_CONVENTIONS = ("relion4", "relion5")


def write_particles_star(
    path: PathLike,
    table: ParticleTable,
    convention: str = "relion4",
    voxel_size: float = 1.0,
    volume_shape_xyz: ShapeXYZ | Mapping[str, ShapeXYZ] | None = None,
) -> Path:
    """RELION STAR particle file.

    ``relion4``: ``rlnCoordinateX/Y/Z`` in voxels from the volume corner.
    ``relion5``: ``rlnCenteredCoordinateX/Y/ZAngst`` in Angstrom from the volume
    centre (needs ``voxel_size`` and ``volume_shape_xyz``: one (x, y, z) size, or
    a mapping from tomogram name to its size).
    Orientations as ``rlnAngleRot/Tilt/Psi`` (ZYZ, degrees, RELION's sense: see
    :func:`_relion_angles`); the class as ``rlnClassNumber``.
    """
    _check_star_convention(convention, volume_shape_xyz)
    path = Path(path)
    if convention == "relion4":
        coordinate_labels = ["rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ"]
        coordinates = table.xyz
    else:
        coordinate_labels = [
            "rlnCenteredCoordinateXAngst",
            "rlnCenteredCoordinateYAngst",
            "rlnCenteredCoordinateZAngst",
        ]
        coordinates = (table.xyz - _star_centres(volume_shape_xyz, table.tomo)) * voxel_size
    angles = _relion_angles(table.rotation)
    labels = (
        ["rlnTomoName"]
        + coordinate_labels
        + ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnClassNumber", "rlnAutopickFigureOfMerit"]
    )
    lines = ["", "# version 30001", "", "data_particles", "", "loop_"]
    lines += [f"_{label} #{i + 1}" for i, label in enumerate(labels)]
    for i in range(len(table)):
        values = [
            table.tomo[i],
            *(f"{v:.4f}" for v in coordinates[i]),
            *(f"{v:.4f}" for v in angles[i]),
            str(int(table.class_id[i])),
            f"{table.score[i]:.6g}",
        ]
        lines.append("\t".join(values))
    with atomic_output(path) as temporary:
        temporary.write_text("\n".join(lines) + "\n")
    return path


def read_particles_star(
    path: PathLike,
    convention: str = "relion4",
    voxel_size: float = 1.0,
    volume_shape_xyz: ShapeXYZ | Mapping[str, ShapeXYZ] | None = None,
) -> ParticleTable:
    """Read a RELION STAR particle file written in the given convention (see the writer)."""
    _check_star_convention(convention, volume_shape_xyz)
    labels, rows = _read_star_loop(path)

    def column(name, default=None):
        if name not in labels:
            if default is None:
                raise InputError(f"{path}: no _{name} column; is it a {convention} file?")
            return np.full(len(rows), default, dtype=float)
        index = labels.index(name)
        values = []
        for line, fields in rows:
            try:
                values.append(float(fields[index]))
            except ValueError:
                raise InputError(f"{path}:{line}: column {name}: {fields[index]!r} is not a number") from None
        return np.array(values, dtype=float)

    tomo = np.array([f[labels.index("rlnTomoName")] if "rlnTomoName" in labels else "" for _, f in rows])
    if convention == "relion4":
        xyz = np.stack([column(f"rlnCoordinate{a}") for a in "XYZ"], axis=1)
    else:
        centred = np.stack([column(f"rlnCenteredCoordinate{a}Angst") for a in "XYZ"], axis=1)
        xyz = centred / voxel_size + _star_centres(volume_shape_xyz, tomo)
    # Picked orientations are rlnAngle* (RELION 4) or rlnTomoSubtomogram* (RELION 5 priors).
    prefix = "rlnAngle" if "rlnAngleRot" in labels else "rlnTomoSubtomogram"
    rotation = _rotations_from_relion(
        np.stack([column(f"{prefix}{name}", 0) for name in ("Rot", "Tilt", "Psi")], axis=1).reshape(-1, 3)
    )
    return ParticleTable(
        tomo=tomo,
        class_id=column("rlnClassNumber", 1).astype(int),
        xyz=xyz.reshape(-1, 3),
        rotation=rotation,
        score=column("rlnAutopickFigureOfMerit", np.nan),
    )


PARTICLE_FILE_TYPES = (".csv", ".xml", ".star")


def particle_file_type(path: PathLike) -> str:
    """The type of a particle file from its extension: .csv, .xml or .star; InputError for others."""
    suffix = Path(path).suffix.lower()
    if suffix not in PARTICLE_FILE_TYPES:
        raise InputError(f"{path}: unknown particle file type; use .csv, .xml or .star")
    return suffix


def read_particles(
    path: PathLike,
    star_convention: str = "relion4",
    voxel_size: float = 1.0,
    volume_shape_xyz: ShapeXYZ | Mapping[str, ShapeXYZ] | None = None,
) -> ParticleTable:
    """A particle table from CSV, DeepFinder XML or RELION STAR, chosen by the file extension.

    The other parameters are those of :func:`read_particles_star`, for STAR files.
    """
    file_type = particle_file_type(path)
    if file_type == ".csv":
        return read_particles_csv(path)
    if file_type == ".xml":
        return read_particles_xml(path)
    return read_particles_star(path, star_convention, voxel_size, volume_shape_xyz)


def write_particles(
    path: PathLike,
    table: ParticleTable,
    star_convention: str = "relion4",
    voxel_size: float = 1.0,
    volume_shape_xyz: ShapeXYZ | Mapping[str, ShapeXYZ] | None = None,
) -> Path:
    """Write a particle table as CSV, DeepFinder XML or RELION STAR, chosen by the file extension.

    The other parameters are those of :func:`write_particles_star`, for STAR files.
    """
    file_type = particle_file_type(path)
    if file_type == ".csv":
        return write_particles_csv(path, table)
    if file_type == ".xml":
        return write_particles_xml(path, table)
    return write_particles_star(path, table, star_convention, voxel_size, volume_shape_xyz)


def _check_star_convention(convention, volume_shape_xyz):
    if convention not in STAR_CONVENTIONS:
        raise ValueError(f"Unknown STAR convention {convention!r}; use one of {STAR_CONVENTIONS}")
    if convention == "relion5" and volume_shape_xyz is None:
        raise ValueError("relion5 STAR coordinates are centred: give the tomogram size volume_shape_xyz")


def _star_centres(volume_shape_xyz, tomo: np.ndarray) -> np.ndarray:
    """Origin of RELION 5 centred coordinates, per particle: the voxel of index size // 2."""
    if isinstance(volume_shape_xyz, Mapping):
        unknown = set(tomo) - set(volume_shape_xyz)
        if unknown:
            raise ValueError(
                f"No tomogram size given for {sorted(unknown)[:5]}: relion5 STAR "
                "coordinates are centred, every tomogram's size is needed"
            )
        sizes = np.array([volume_shape_xyz[name] for name in tomo], dtype=float).reshape(-1, 3)
    else:
        sizes = np.broadcast_to(np.asarray(volume_shape_xyz, dtype=float), (len(tomo), 3))
    return sizes // 2


def _relion_angles(rotation: np.ndarray) -> np.ndarray:
    """(rot, tilt, psi) of RELION: ``Rz(rot) @ Ry(tilt) @ Rz(psi)`` (intrinsic ZYZ) is the
    inverse of ``rotation``, as Scipion's reliontomo converts coordinate matrices."""
    return euler_angles(np.transpose(rotation, (0, 2, 1)), "ZYZ")


def _rotations_from_relion(angles: np.ndarray) -> np.ndarray:
    """Inverse of :func:`_relion_angles`."""
    if not len(angles):
        return np.empty((0, 3, 3))
    inverse = Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix()
    return np.transpose(inverse, (0, 2, 1))


def _read_star_loop(path: PathLike) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Column labels and rows (line number, values) of the first loop of a STAR file."""
    labels: list[str] = []
    rows: list[tuple[int, list[str]]] = []
    in_loop = False
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.strip()
        if line == "loop_":
            if labels:
                break  # first table only
            in_loop = True
        elif in_loop and line.startswith("_"):
            labels.append(line[1:].split()[0])
        elif in_loop and labels and line and not line.startswith("#"):
            if line.startswith("data_"):
                break
            fields = line.split()
            if len(fields) < len(labels):
                raise InputError(f"{path}:{number}: {len(fields)} values for {len(labels)} columns")
            rows.append((number, fields))
    if not labels:
        raise InputError(f"{path}: no STAR loop found")
    return labels, rows
