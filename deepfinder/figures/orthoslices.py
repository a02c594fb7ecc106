"""Orthoslices of a tomogram as grey images, class colours, and where voxels land on screen.

Pure numpy, shared by the matplotlib pictures (:mod:`deepfinder.figures.plots`)
and the annotation window (:mod:`deepfinder.viewers.annotation_window`): the
slices (optionally low-pass filtered) turned into grey images, and the mapping
between voxels and canvas pixels of the three linked views.

Positions are x, y, z in voxels (as in a particle table); arrays are
(z, y, x). Each view has an in-plane horizontal axis ``u``, a vertical axis
``v`` (pointing up on screen, as Scipion's bottom-left-corner convention) and
a slice axis ``w``, given as indices into x, y, z.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter

#: (u, v, w) of each view, as indices into (x, y, z).
VIEW_AXES = {"XY": (0, 1, 2), "XZ": (0, 2, 1), "YZ": (2, 1, 0)}

PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
)


def default_colour(class_id: int) -> str:
    """Colour of class ``class_id`` (1, 2, ...) until the user picks another."""
    return PALETTE[(class_id - 1) % len(PALETTE)]


def orthoslice(volume: np.ndarray, view: str, index: int, lowpass_sigma: float = 0.0) -> np.ndarray:
    """The slice of ``volume`` (z, y, x) shown in ``view``, as a (v, u) float32 array.

    ``lowpass_sigma`` (voxels) > 0 applies a 3D Gaussian low-pass: it is
    computed on a slab just thick enough around the slice, so the cost does
    not grow with the tomogram thickness.
    """
    if view not in VIEW_AXES:
        raise ValueError(f"view must be one of {sorted(VIEW_AXES)}, got {view!r}")
    slice_axis = 2 - VIEW_AXES[view][2]
    size = volume.shape[slice_axis]
    index = int(np.clip(index, 0, size - 1))
    half = int(np.ceil(3 * lowpass_sigma)) if lowpass_sigma > 0 else 0
    start, stop = max(0, index - half), min(size, index + half + 1)
    slab = np.asarray(np.take(volume, np.arange(start, stop), axis=slice_axis), dtype=np.float32)
    if lowpass_sigma > 0:
        slab = gaussian_filter(slab, lowpass_sigma, mode="nearest")
    section = np.take(slab, index - start, axis=slice_axis)
    # (z, y) for the YZ view: transpose to (y, z) so rows are v and columns u.
    return section.T if view == "YZ" else section


def to_grey(section: np.ndarray, range_std: float, mean_std: tuple[float, float] | None = None) -> np.ndarray:
    """uint8 image showing ``section`` from mean - range_std * std (black) to mean + range_std * std.

    ``mean_std`` gives the mean and standard deviation to use (e.g. of the whole
    tomogram, see :func:`sampled_mean_std`); by default those of ``section``.
    """
    if range_std <= 0:
        raise ValueError(f"range_std must be positive, got {range_std}")
    mean, std = mean_std if mean_std is not None else (float(section.mean()), float(section.std()))
    std = std or 1.0
    low = mean - range_std * std
    scaled = (section - low) / (2 * range_std * std)
    return (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def sampled_mean_std(volume: np.ndarray, max_rows: int = 4096) -> tuple[float, float]:
    """Mean and standard deviation of ``volume`` (z, y, x) from at most ``max_rows`` of its x rows.

    The rows are spread evenly over z and y and read whole, so a memory-mapped
    tomogram is read in a few long runs instead of entirely.
    """
    nz, ny, _ = volume.shape
    step = max(1, int(np.ceil(np.sqrt(nz * ny / max_rows))))
    sample = np.asarray(volume[step // 2 :: step, step // 2 :: step, :], dtype=np.float64)
    return float(sample.mean()), float(sample.std())


def fit_scale(shape_zyx: tuple[int, int, int], width: int, height: int) -> float:
    """Pixels per voxel showing the whole tomogram in the three views laid out as

    ``XY | YZ`` over ``XZ``, in at most ``width`` x ``height`` pixels.
    """
    nz, ny, nx = shape_zyx
    return min(width / (nx + nz), height / (ny + nz))


def canvas_sizes(shape_zyx: tuple[int, int, int], scale: float) -> dict[str, tuple[int, int]]:
    """(width, height) in pixels of each view's canvas at ``scale`` pixels per voxel."""
    nz, ny, nx = shape_zyx
    return {
        "XY": (round(nx * scale), round(ny * scale)),
        "XZ": (round(nx * scale), round(nz * scale)),
        "YZ": (round(nz * scale), round(ny * scale)),
    }


def to_canvas(view: str, xyz, centre_xyz, scale: float, canvas_size: tuple[int, int]) -> np.ndarray:
    """Canvas pixel (column, row) of the point ``xyz`` (voxels) in ``view``.

    The view shows ``centre_xyz`` in the middle of the canvas, ``scale`` pixels
    per voxel, ``v`` pointing up. Voxel i covers pixels of i - 0.5 to i + 0.5.
    """
    u, v, _ = VIEW_AXES[view]
    xyz, centre = np.asarray(xyz, dtype=float), np.asarray(centre_xyz, dtype=float)
    width, height = canvas_size
    return np.array(
        [(xyz[..., u] - centre[u]) * scale + width / 2, height / 2 - (xyz[..., v] - centre[v]) * scale]
    )


def from_canvas(
    view: str,
    column: float,
    row: float,
    slice_index: float,
    centre_xyz,
    scale: float,
    canvas_size: tuple[int, int],
) -> np.ndarray:
    """The point (x, y, z, voxels) under canvas pixel (column, row) of ``view``."""
    u, v, w = VIEW_AXES[view]
    width, height = canvas_size
    xyz = np.zeros(3)
    xyz[u] = (column - width / 2) / scale + centre_xyz[u]
    xyz[v] = (height / 2 - row) / scale + centre_xyz[v]
    xyz[w] = slice_index
    return xyz


def canvas_image(
    volume: np.ndarray,
    view: str,
    slice_index: int,
    centre_xyz,
    scale: float,
    canvas_size: tuple[int, int],
    range_std: float,
    mean_std: tuple[float, float] | None = None,
    lowpass_sigma: float = 0.0,
    fill: int = 32,
) -> np.ndarray:
    """The (height, width) uint8 image of a canvas showing slice ``slice_index`` of ``view``.

    Each canvas pixel takes its nearest voxel, and only the voxels shown are read
    from ``volume`` (z, y, x): a memory-mapped tomogram larger than the canvas is
    read sparsely, a zoomed-in one only where it shows. Pixels off the tomogram
    are ``fill``. Grey levels as :func:`to_grey`; ``lowpass_sigma`` as :func:`orthoslice`.
    """
    width, height = canvas_size
    u, v, w = VIEW_AXES[view]
    shape_xyz = volume.shape[::-1]
    columns = np.floor((np.arange(width) + 0.5 - width / 2) / scale + centre_xyz[u] + 0.5).astype(int)
    rows = np.floor((height / 2 - np.arange(height) - 0.5) / scale + centre_xyz[v] + 0.5).astype(int)
    columns_in = (columns >= 0) & (columns < shape_xyz[u])
    rows_in = (rows >= 0) & (rows < shape_xyz[v])
    image = np.full((height, width), np.uint8(fill))
    if not columns_in.any() or not rows_in.any():
        return image
    voxel_columns, column_of_pixel = np.unique(columns[columns_in], return_inverse=True)
    voxel_rows, row_of_pixel = np.unique(rows[rows_in], return_inverse=True)
    index = int(np.clip(slice_index, 0, shape_xyz[w] - 1))
    section = _read_section(volume, view, index, voxel_rows, voxel_columns, lowpass_sigma)
    grey = to_grey(section, range_std, mean_std)
    image[np.ix_(rows_in, columns_in)] = grey[np.ix_(row_of_pixel, column_of_pixel)]
    return image


def _read_section(
    volume: np.ndarray, view: str, index: int, rows: np.ndarray, columns: np.ndarray, lowpass_sigma: float
) -> np.ndarray:
    """The (rows, columns) voxels of slice ``index`` of ``view`` (float32), read alone from ``volume``.

    With a low-pass, the box spanning them (and a margin) is read and filtered first.
    """
    u, v, w = VIEW_AXES[view]
    half = int(np.ceil(3 * lowpass_sigma)) if lowpass_sigma > 0 else 0
    if half:
        shape_xyz = volume.shape[::-1]
        box = [slice(None)] * 3
        starts = [0] * 3
        for axis, low, high in ((u, columns[0], columns[-1]), (v, rows[0], rows[-1]), (w, index, index)):
            starts[axis] = max(0, low - half)
            box[2 - axis] = slice(starts[axis], min(shape_xyz[axis], high + half + 1))
        slab = np.asarray(volume[tuple(box)], dtype=np.float32)
        volume, index = gaussian_filter(slab, lowpass_sigma, mode="nearest"), index - starts[w]
        rows, columns = rows - starts[v], columns - starts[u]
    wanted = [None, None, None]
    wanted[2 - u], wanted[2 - v], wanted[2 - w] = columns, rows, np.array([index])
    section = np.asarray(volume[np.ix_(*wanted)], dtype=np.float32).squeeze(axis=2 - w)
    # The remaining axes come in (z, y, x) order: (y, z) = (v, u) except for YZ, where it is (u, v).
    return section.T if view == "YZ" else section
