"""Amplitude spectra of tomograms, and filtering a tomogram to the spectrum of others.

Tomograms of another microscope session differ from the training ones in how strongly each
spatial frequency comes through (defocus, dose, ice, reconstruction filter). Filtering a
tomogram so that its radially averaged amplitude spectrum is that of the training tomograms
makes it look more like what the network learnt from, without retraining.
"""

from __future__ import annotations

import numpy as np
import scipy.fft

from .normalize import normalize, tomogram_stats

#: Edge of the boxes the spectrum is averaged over, in voxels (Welch's method): its
#: frequency resolution is 1 / BOX_EDGE cycles per voxel.
BOX_EDGE = 64
#: Boxes per axis at most: up to 4^3 = 64 boxes spread over the tomogram, overlapping by up to
#: half a box where it is small.
BOXES_PER_AXIS = 4
#: Spectrum bins from 0 to the corner of the Fourier cube, sqrt(3) / 2 cycles per voxel.
N_BINS = BOX_EDGE
#: The key of the training tomograms' mean :func:`amplitude_profile` in a model's JSON file.
PROFILE_KEY = "amplitude_profile"
#: A band far weaker than in the training tomograms holds mostly noise: it is boosted at most this much.
MAX_GAIN = 10.0
_CORNER = np.sqrt(3) / 2


def amplitude_profile(volume: np.ndarray) -> np.ndarray:
    """Radially averaged amplitude spectrum of a tomogram, in units of its standard deviation
    (white noise gives 1 in every bin).

    Averaged over up to 64 boxes of up to :data:`BOX_EDGE` voxels a side spread over the
    volume, each tapered by a Hann window (Welch's method): cheap, memory-bounded, and read
    from a memory-mapped file without loading it.

    Parameters
    ----------
    volume : (z, y, x) array
        The tomogram; may be memory-mapped.

    Returns
    -------
    (N_BINS,) float64 array
        Root-mean-square Fourier amplitude in equal bins of spatial frequency from 0 to
        sqrt(3)/2 cycles per voxel; 0 for the first bin (the mean) and for bins a thin
        tomogram's boxes sample no frequency of.
    """
    mean, std = tomogram_stats(volume)
    box = tuple(min(BOX_EDGE, size) for size in volume.shape)
    window = _hann(box)
    bins = _radial_bins(box)
    power = np.zeros(N_BINS)
    starts = [
        np.linspace(0, size - edge, min(BOXES_PER_AXIS, max(1, round(2 * size / edge) - 1))).astype(int)
        for size, edge in zip(volume.shape, box)
    ]
    for z in starts[0]:
        for y in starts[1]:
            for x in starts[2]:
                region = normalize(volume[z : z + box[0], y : y + box[1], x : x + box[2]], mean, std)
                power += np.bincount(bins.ravel(), _power_spectrum(region, window).ravel(), N_BINS)
    counts = np.bincount(bins.ravel(), minlength=N_BINS) * np.prod([len(s) for s in starts])
    profile = np.sqrt(np.divide(power, counts, out=np.zeros(N_BINS), where=counts > 0) / np.sum(window**2))
    profile[0] = 0.0
    return profile


def mean_amplitude_profile(volumes: list[np.ndarray]) -> np.ndarray:
    """The mean :func:`amplitude_profile` of several tomograms (e.g. a model's training ones)."""
    return np.mean([amplitude_profile(volume) for volume in volumes], axis=0)


def match_amplitude_profile(volume: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The tomogram filtered so that its amplitude profile becomes ``target``.

    Each spatial frequency is scaled by target / own amplitude (at most :data:`MAX_GAIN`),
    over the whole volume at once: it needs memory for about three float32 copies of it.

    Parameters
    ----------
    volume : (z, y, x) array
        The tomogram; may be memory-mapped.
    target : (N_BINS,) array
        An :func:`amplitude_profile`, e.g. the mean one of the training tomograms.

    Returns
    -------
    (z, y, x) float32 array
        The filtered tomogram, zero mean and unit variance.
    """
    target = np.asarray(target, dtype=float)
    if target.shape != (N_BINS,) or not np.all(np.isfinite(target)) or np.any(target < 0):
        raise ValueError(f"An amplitude profile is {N_BINS} finite values >= 0, got shape {target.shape}")
    own = amplitude_profile(volume)
    known = (own > 0) & (target > 0)
    if not known.any():
        raise ValueError("The tomogram's amplitude spectrum and the target share no frequency band")
    centres = (np.arange(N_BINS) + 0.5) * _CORNER / N_BINS
    gain = np.interp(centres, centres[known], np.minimum(target[known] / own[known], MAX_GAIN))
    mean, std = tomogram_stats(volume)
    spectrum = scipy.fft.rfftn(normalize(volume, mean, std), workers=-1)
    frequencies = [np.fft.fftfreq(n) for n in volume.shape[:2]]
    x_squared = np.fft.rfftfreq(volume.shape[2]) ** 2
    for z, fz in enumerate(frequencies[0]):
        radius = np.sqrt(fz**2 + frequencies[1][:, None] ** 2 + x_squared[None, :])
        spectrum[z] *= np.interp(radius, centres, gain).astype(np.float32)
    filtered = scipy.fft.irfftn(spectrum, s=volume.shape, workers=-1)
    del spectrum
    return normalize(filtered, float(filtered.mean()), float(filtered.std()), out=filtered)


def _hann(box: tuple[int, int, int]) -> np.ndarray:
    """3D Hann taper of a box, so that its borders leak no power along the axes."""
    z, y, x = (np.hanning(edge).astype(np.float32) for edge in box)
    return z[:, None, None] * y[None, :, None] * x[None, None, :]


def _power_spectrum(region: np.ndarray, window: np.ndarray) -> np.ndarray:
    """|rfftn|^2 of a zero-mean, tapered box."""
    return np.abs(scipy.fft.rfftn((region - region.mean()) * window)) ** 2


def _radial_bins(box: tuple[int, int, int]) -> np.ndarray:
    """Bin index of each frequency of an rfftn of a ``box``-shaped array."""
    freqs = [np.fft.fftfreq(n) for n in box[:2]] + [np.fft.rfftfreq(box[2])]
    fz, fy, fx = np.meshgrid(*freqs, indexing="ij", sparse=True)
    radius = np.sqrt(fz**2 + fy**2 + fx**2)
    return np.minimum((radius / _CORNER * N_BINS).astype(int), N_BINS - 1)
