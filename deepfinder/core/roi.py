"""Regions of interest: a mask volume saying where to search for particles (nonzero = here).

A mask may come at another sampling than the tomogram (e.g. drawn on a binned
tomogram): :func:`fit_mask` resamples it to the tomogram's grid by nearest
neighbour, and refuses a mask whose shape cannot correspond to the tomogram's.
"""

from __future__ import annotations

import os

import numpy as np

from . import io
from .errors import InputError


def fit_mask(
    mask: np.ndarray,
    shape_zyx: tuple[int, int, int],
    mask_voxel_size: float | None = None,
    voxel_size: float | None = None,
    name: str | os.PathLike = "mask",
    tomogram_name: str | os.PathLike = "the tomogram",
) -> np.ndarray:
    """A mask as a boolean (z, y, x) array on the grid of a volume of ``shape_zyx``.

    Parameters
    ----------
    mask : (z, y, x) array
        Nonzero where particles are searched.
    shape_zyx : (int, int, int)
        Shape of the volume the mask is for (a tomogram, or a label map).
    mask_voxel_size, voxel_size : float, optional
        Angstrom per voxel of the mask and of the volume. When both are known
        (> 0) their ratio is the resampling factor; otherwise the ratio of the
        largest edges rounded to a whole binning factor (2, 1/2...).
    name, tomogram_name : str or path
        The mask's and the volume's names in error messages (their files).

    Returns
    -------
    (z, y, x) bool array of shape ``shape_zyx``
        The mask resampled by nearest neighbour (corners aligned: voxel ``i`` of
        the volume takes mask voxel ``floor((i + 0.5) / factor)``).

    Raises
    ------
    InputError
        The mask is not 3D, holds non-finite values or no nonzero voxel, or its
        shape at its sampling does not cover the volume (within one mask voxel).
    """
    mask = np.asarray(mask)
    shape_zyx = tuple(int(n) for n in shape_zyx)
    if mask.ndim != 3:
        raise InputError(f"Mask {name}: expected a 3D volume, got shape {mask.shape}")
    if np.issubdtype(mask.dtype, np.floating) and not np.all(np.isfinite(mask)):
        raise InputError(f"Mask {name}: holds non-finite values (NaN or infinity); a mask is 0 or nonzero")
    inside = mask != 0
    if not inside.any():
        raise InputError(f"Mask {name}: every voxel is 0, so nothing would be searched")
    if inside.shape == shape_zyx:
        return inside
    known = bool(mask_voxel_size and voxel_size and mask_voxel_size > 0 and voxel_size > 0)
    largest = int(np.argmax(shape_zyx))
    if known:
        factor = mask_voxel_size / voxel_size
    else:  # binned by a whole factor, one way or the other
        ratio = shape_zyx[largest] / inside.shape[largest]
        factor = round(ratio) if ratio >= 1 else 1 / round(1 / ratio)
    covered = [abs(m * factor - n) <= max(factor, 1.0) for m, n in zip(inside.shape, shape_zyx)]
    if not all(covered):
        sampling = (
            f" at {mask_voxel_size:g} A/voxel and {voxel_size:g} A/voxel" if known else " (no voxel sizes)"
        )
        raise InputError(
            f"Mask {name} of shape (x, y, z) {inside.shape[::-1]} cannot cover {tomogram_name} of shape "
            f"{shape_zyx[::-1]}{sampling}: give a mask of the tomogram's shape, or of the same field of "
            "view at another sampling with the voxel size in its header"
        )
    indices = [
        np.minimum(((np.arange(n) + 0.5) / factor).astype(int), m - 1)
        for m, n in zip(inside.shape, shape_zyx)
    ]
    return inside[np.ix_(*indices)]


def positions_inside(mask: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    """Whether each position (n, 3; x, y, z in voxels of the mask's grid) lies in the mask.

    A position belongs to the voxel it rounds to; positions outside the volume are outside.
    """
    zyx = np.rint(np.asarray(xyz, dtype=float).reshape(-1, 3)[:, ::-1]).astype(int)
    within = np.all((zyx >= 0) & (zyx < np.array(mask.shape)), axis=1)
    inside = np.zeros(len(zyx), dtype=bool)
    inside[within] = mask[tuple(zyx[within].T)]
    return inside


def read_mask_for(
    mask_path: str | os.PathLike,
    volume_path: str | os.PathLike,
    shape_zyx: tuple[int, int, int],
    mask_voxel_size: float | None = None,
) -> np.ndarray:
    """The mask file ``mask_path`` on the grid of the volume ``volume_path`` (see :func:`fit_mask`).

    ``mask_voxel_size`` (Angstrom) is for a mask file whose header states none.
    """
    return fit_mask(
        io.read_volume(mask_path),
        shape_zyx,
        mask_voxel_size or io.read_voxel_size(mask_path),
        io.read_voxel_size(volume_path),
        name=mask_path,
        tomogram_name=volume_path,
    )
