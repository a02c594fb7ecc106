"""Reading and writing volumes (MRC), output files replaced whole, and rescaling particle positions.

Particle tables are read and written by :mod:`deepfinder.core.tables`.

Every writer replaces its file whole or not at all (:func:`atomic_output`), and
commands refuse outputs that would overwrite their inputs (:func:`refuse_overwriting_inputs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import stat
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import mrcfile
import mrcfile.utils
import numpy as np

from .errors import InputError
from .particles import ParticleTable

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


# --------------------------------------------------------------------------- particle positions


def rescale_positions(
    table: ParticleTable,
    coordinates_voxel_size: float,
    voxel_size: float,
    volume_shape_xyz: ShapeXYZ | None,
    source: PathLike = "",
) -> ParticleTable:
    """``table`` with positions given in voxels of ``coordinates_voxel_size`` (Angstrom) moved to
    voxels of ``voxel_size``, the tomogram's (Angstrom).

    Positions measured from the volume corner, as in the tables (voxel centres at whole numbers).
    Logs a warning when more than :data:`OUTSIDE_WARNING_FRACTION` of them fall outside a
    volume of ``volume_shape_xyz`` voxels (when given): the coordinates' voxel size is then likely wrong.
    """
    if coordinates_voxel_size <= 0 or voxel_size <= 0:
        raise InputError(f"voxel sizes must be > 0 Angstrom, got {coordinates_voxel_size} and {voxel_size}")
    xyz = table.xyz * (coordinates_voxel_size / voxel_size)
    if volume_shape_xyz is None:
        return dataclasses.replace(table, xyz=xyz)
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
