"""Intensity normalisation, identical at training and at inference.

Statistics are taken once per tomogram and applied to every patch of it, so
what the network sees in training is what it sees when segmenting.
"""

from __future__ import annotations

import numpy as np

from .errors import InputError

SAMPLE_SIZE = 2_000_000


def tomogram_stats(volume: np.ndarray, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation of a tomogram, from a random subsample of voxels.

    Works on memory-mapped arrays without reading the whole file. Raises
    :class:`~deepfinder.core.errors.InputError` for tomograms with NaN/inf values or no contrast.
    """
    flat_size = volume.size
    if flat_size <= SAMPLE_SIZE:
        sample = np.asarray(volume, dtype=np.float64).ravel()
    else:
        rng = np.random.default_rng(seed)
        # Whole z-slices keep reads contiguous on memory-mapped files.
        n_slices = max(1, min(volume.shape[0], SAMPLE_SIZE // (volume.shape[1] * volume.shape[2])))
        slices = np.sort(rng.choice(volume.shape[0], size=n_slices, replace=False))
        sample = np.asarray(volume[slices], dtype=np.float64).ravel()
    if not np.all(np.isfinite(sample)):
        raise InputError("The tomogram contains NaN or infinite values: fix or re-reconstruct it")
    std = float(sample.std())
    if std == 0 or not np.isfinite(std):
        raise InputError("The tomogram is constant (no contrast): check the file")
    return float(sample.mean()), std


def normalize(patch: np.ndarray, mean: float, std: float, out: np.ndarray | None = None) -> np.ndarray:
    """Zero-mean, unit-variance float32 patch using tomogram-wide statistics.

    Written into ``out`` (a float32 array of the patch's shape) when given, which spares
    a temporary per patch; returns it.
    """
    if out is None:
        out = np.empty(np.shape(patch), dtype=np.float32)
    np.subtract(patch, mean, out=out, dtype=np.float32)
    return np.divide(out, std, out=out)
