"""Changing the voxel size of a volume."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def resample_to_voxel_size(
    volume: np.ndarray, voxel_size: float, new_voxel_size: float, order: int = 1
) -> np.ndarray:
    """Resample a (z, y, x) volume from ``voxel_size`` to ``new_voxel_size`` (both in Angstrom).

    The centre stays the centre; the returned edge lengths are rounded to whole voxels.
    """
    if voxel_size <= 0 or new_voxel_size <= 0:
        raise ValueError(f"Voxel sizes must be positive, got {voxel_size} and {new_voxel_size} A")
    factor = voxel_size / new_voxel_size
    volume = np.asarray(volume, dtype=np.float32)
    if np.isclose(factor, 1.0):
        return volume.copy()
    return ndimage.zoom(volume, factor, order=order, mode="nearest", grid_mode=True)
