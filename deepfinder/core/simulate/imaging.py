"""Image formation: projection over a single-axis tilt series around Y, a contrast transfer
function, shot or Gaussian noise at a chosen SNR, and weighted back-projection.

The missing wedge, CTF fringes and Z elongation therefore arise from the image
formation instead of being painted. Tilt angles are in degrees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import sparse

from ..settings import SettingError

PHASE_PER_ANGSTROM = 1e-3  # phase shift (rad) per Angstrom of protein: ~0.25 rad across a ribosome


@dataclass(frozen=True)
class TiltSeriesParameters:
    """Acquisition and reconstruction settings.

    Attributes
    ----------
    tilt_min_deg, tilt_max_deg, tilt_step_deg : float
        Tilt range around the Y axis, degrees.
    defocus_um : float
        Defocus in micrometres, positive for underfocus (the usual setting).
    voltage_kv : float
        Acceleration voltage, kV.
    spherical_aberration_mm : float
        Cs, mm.
    amplitude_contrast : float
        Fraction of amplitude contrast, in [0, 1).
    bfactor_a2 : float
        Envelope ``exp(-B k^2 / 4)`` damping high frequencies, Angstrom^2.
    snr : float
        var(signal) / var(noise) over the projections, the signal being the
        image of the target particles alone (distractors add contrast on top).
    noise : str
        ``"gaussian"`` or ``"poisson"`` (shot noise at the dose giving ``snr``).
    inelastic_mean_free_path_a : float
        Thicker ice at high tilt lets fewer electrons through: transmission
        ``exp(-thickness / (cos(tilt) * mfp))`` scales the noise of each image.
    radial_cutoff, radial_falloff : float
        Back-projection filter, cycles per pixel: the ramp is kept up to the
        cutoff and falls off as a Gaussian of this width above it (IMOD's
        ``RADIAL`` option, same defaults).
    """

    tilt_min_deg: float = -60.0
    tilt_max_deg: float = 60.0
    tilt_step_deg: float = 3.0
    defocus_um: float = 3.0
    voltage_kv: float = 300.0
    spherical_aberration_mm: float = 2.7
    amplitude_contrast: float = 0.07
    bfactor_a2: float = 0.0
    snr: float = 0.5
    noise: str = "gaussian"
    inelastic_mean_free_path_a: float = 3500.0
    radial_cutoff: float = 0.35
    radial_falloff: float = 0.035

    def __post_init__(self):
        if not self.snr > 0:
            raise SettingError("snr", f"must be > 0 (var(signal)/var(noise)), got {self.snr}")
        if not -90 < self.tilt_min_deg < self.tilt_max_deg < 90:
            raise ValueError(
                f"Tilt range [{self.tilt_min_deg}, {self.tilt_max_deg}] degrees is invalid: "
                "give -90 < tilt_min_deg < tilt_max_deg < 90"
            )
        if not self.tilt_step_deg > 0:
            raise ValueError(f"tilt_step_deg must be > 0, got {self.tilt_step_deg}")
        if self.noise not in ("gaussian", "poisson"):
            raise ValueError(f"noise must be 'gaussian' or 'poisson', got {self.noise!r}")
        if not 0 <= self.amplitude_contrast < 1:
            raise ValueError(f"amplitude_contrast must be in [0, 1), got {self.amplitude_contrast}")
        if not (0 < self.radial_cutoff <= 0.5 and self.radial_falloff > 0):
            raise ValueError("radial_cutoff must be in (0, 0.5] and radial_falloff > 0 (cycles per pixel)")
        if self.voltage_kv <= 0 or self.defocus_um < 0 or self.spherical_aberration_mm < 0:
            raise ValueError("voltage_kv must be > 0, defocus_um and spherical_aberration_mm >= 0")

    @property
    def angles_deg(self) -> np.ndarray:
        """Tilt angles, degrees, from min to max inclusive."""
        n = int(np.floor((self.tilt_max_deg - self.tilt_min_deg) / self.tilt_step_deg + 1e-9)) + 1
        return self.tilt_min_deg + self.tilt_step_deg * np.arange(n)


def _interpolation_entries(
    position: np.ndarray, size: int, rows: np.ndarray, columns_base: np.ndarray, stride: int, weight: float
):
    """Sparse entries of linear interpolation at ``position`` along an axis of ``size``."""
    floor = np.floor(position).astype(np.int64)
    fraction = (position - floor).astype(np.float32)
    entries = []
    for index, w in ((floor, 1 - fraction), (floor + 1, fraction)):
        keep = (index >= 0) & (index < size) & (w > 0)
        entries.append((rows[keep], columns_base[keep] + index[keep] * stride, w[keep] * weight))
    return entries


def projection_operators(depth: int, width: int, angles_deg: np.ndarray):
    """Sparse projector and back-projector of one (z, x) slice over a tilt series.

    The detector has ``width`` pixels. Returns ``(projector, back_projector)``:
    ``projector`` (n_tilts * width, depth * width) integrates along rays
    (Joseph's method, sampling the axis closest to the ray); ``back_projector``
    (depth * width, n_tilts * width) smears each detector pixel back along its
    ray with linear interpolation. Columns / rows of slices are ``z * width + x``.
    """
    z_centre, x_centre = (depth - 1) / 2, (width - 1) / 2
    project, back = [], []
    u = np.arange(width, dtype=np.float64)
    for t, angle in enumerate(np.deg2rad(angles_deg)):
        cos, sin = np.cos(angle), np.sin(angle)
        # A ray hitting detector pixel u passes through x cos - z sin = u (centred coordinates).
        if abs(sin) <= abs(cos):
            uu, zz = np.meshgrid(u - x_centre, np.arange(depth) - z_centre, indexing="ij")
            x = (uu + zz * sin) / cos + x_centre
            rows = (t * width + uu + x_centre).astype(np.int64).ravel()
            base = ((zz + z_centre) * width).astype(np.int64).ravel()
            project += _interpolation_entries(x.ravel(), width, rows, base, 1, 1 / abs(cos))
        else:
            uu, xx = np.meshgrid(u - x_centre, np.arange(width) - x_centre, indexing="ij")
            z = (xx * cos - uu) / sin + z_centre
            rows = (t * width + uu + x_centre).astype(np.int64).ravel()
            base = (xx + x_centre).astype(np.int64).ravel()
            project += _interpolation_entries(z.ravel(), depth, rows, base, width, 1 / abs(sin))
        zz, xx = np.meshgrid(np.arange(depth) - z_centre, np.arange(width) - x_centre, indexing="ij")
        detector = xx * cos - zz * sin + x_centre
        rows = ((zz + z_centre) * width + xx + x_centre).astype(np.int64).ravel()
        back += _interpolation_entries(detector.ravel(), width, rows, np.full(rows.shape, t * width), 1, 1.0)

    def assemble(entries, shape):
        rows, columns, values = (np.concatenate(parts) for parts in zip(*entries))
        return sparse.csr_matrix((values.astype(np.float32), (rows, columns)), shape=shape)

    n_tilts = len(angles_deg)
    return (
        assemble(project, (n_tilts * width, depth * width)),
        assemble(back, (depth * width, n_tilts * width)),
    )


def project(volume: np.ndarray, projector) -> np.ndarray:
    """Tilt-series projections (n_tilts, y, x) of a (z, y, x) volume; all Y slices at once."""
    depth, height, width = volume.shape
    columns = np.ascontiguousarray(volume.transpose(0, 2, 1), dtype=np.float32).reshape(depth * width, height)
    return (projector @ columns).reshape(-1, width, height).transpose(0, 2, 1)


def ctf(shape_yx: tuple[int, int], voxel_size: float, tilt_series: TiltSeriesParameters) -> np.ndarray:
    """CTF with envelope on the ``rfft2`` grid of an image of ``shape_yx`` pixels.

    ``-(sqrt(1 - A^2) sin(chi) + A cos(chi))`` with
    ``chi = pi lambda df k^2 - pi/2 Cs lambda^3 k^4``: negative at low frequency
    for underfocus, so dense matter images dark.
    """
    volts = tilt_series.voltage_kv * 1e3
    wavelength = 12.2643 / np.sqrt(volts * (1 + 0.978466e-6 * volts))  # Angstrom, relativistic
    ky = np.fft.fftfreq(shape_yx[0], d=voxel_size)
    kx = np.fft.rfftfreq(shape_yx[1], d=voxel_size)
    k2 = ky[:, np.newaxis] ** 2 + kx[np.newaxis, :] ** 2
    defocus = tilt_series.defocus_um * 1e4
    cs = tilt_series.spherical_aberration_mm * 1e7
    chi = np.pi * wavelength * defocus * k2 - np.pi / 2 * cs * wavelength**3 * k2**2
    a = tilt_series.amplitude_contrast
    transfer = -(np.sqrt(1 - a**2) * np.sin(chi) + a * np.cos(chi))
    return (transfer * np.exp(-tilt_series.bfactor_a2 * k2 / 4)).astype(np.float32)


def image_tilt_series(
    projections: np.ndarray,
    voxel_size: float,
    tilt_series: TiltSeriesParameters,
    ice_thickness_a: float,
    rng: np.random.Generator,
    reference_projections: np.ndarray | None = None,
) -> np.ndarray:
    """Micrographs from projected densities: phase contrast through the CTF, then noise.

    The noise level makes ``var(signal) / var(noise) = snr`` where the signal
    is the image of ``reference_projections`` (e.g. the target particles only,
    so that gold beads do not raise the noise) or of ``projections`` when None.
    Returns the image contrast (intensity - 1) of each tilt, (n_tilts, y, x).
    """
    transfer = ctf(projections.shape[1:], voxel_size, tilt_series)

    def contrast(projected):
        phase = projected * np.float32(PHASE_PER_ANGSTROM * voxel_size)
        return np.fft.irfft2(np.fft.rfft2(phase) * transfer, s=projected.shape[1:]).astype(np.float32)

    signal = contrast(projections)
    reference = signal if reference_projections is None else contrast(reference_projections)
    angles = np.deg2rad(tilt_series.angles_deg)
    transmission = np.exp(-ice_thickness_a / (np.cos(angles) * tilt_series.inelastic_mean_free_path_a))
    signal_variance = reference.var(axis=(1, 2))
    if not np.any(signal_variance > 0):
        raise ValueError("The specimen gives no image contrast: it holds no particles")
    if tilt_series.noise == "gaussian":
        # Noise variance ~ 1 / transmission; scaled so that total signal / total noise = snr.
        base = signal_variance.sum() / (tilt_series.snr * np.sum(1 / transmission))
        noise_std = np.sqrt(base / transmission).astype(np.float32)
        return signal + rng.standard_normal(signal.shape, dtype=np.float32) * noise_std[:, None, None]
    intensity = np.clip(1 + signal, 0, None)
    # Counts ~ Poisson(dose_t * I): signal variance dose_t^2 var, noise variance dose_t mean(I).
    mean_intensity = intensity.mean(axis=(1, 2))
    dose = tilt_series.snr * np.sum(transmission * mean_intensity) / np.sum(transmission**2 * signal_variance)
    dose_per_tilt = (dose * transmission)[:, None, None]
    counts = rng.poisson(dose_per_tilt * intensity)
    return (counts / dose_per_tilt - 1).astype(np.float32)


def ramp_filter(images: np.ndarray, cutoff: float = 0.5, falloff: float = 0.035) -> np.ndarray:
    """Filter each image row (along x, perpendicular to the tilt axis) with the ramp |k|.

    Uses the spatial Ram-Lak kernel, so the zero frequency is weighted
    correctly, with zero padding against wrap-around. Above ``cutoff``
    (cycles per pixel) the ramp falls off as a Gaussian of width ``falloff``.
    """
    width = images.shape[-1]
    padded = 1 << int(np.ceil(np.log2(2 * width)))
    n = np.fft.fftfreq(padded, d=1.0 / padded)
    kernel = np.zeros(padded)
    kernel[0] = 0.25
    odd = n % 2 == 1
    kernel[odd] = -1 / (np.pi * n[odd]) ** 2
    frequency = np.fft.rfftfreq(padded)
    roll_off = np.exp(-(np.clip(frequency - cutoff, 0, None) ** 2) / (2 * falloff**2))
    response = (np.abs(np.fft.rfft(kernel)) * roll_off).astype(np.float32)
    filtered = np.fft.irfft(np.fft.rfft(images, n=padded, axis=-1) * response, n=padded, axis=-1)
    return filtered[..., :width].astype(np.float32)


def weighted_back_projection(
    images: np.ndarray, back_projector, depth: int, cutoff: float = 0.35, falloff: float = 0.035
) -> np.ndarray:
    """Reconstruct a (z, y, x) volume of ``depth`` slices from (n_tilts, y, x) images.

    ``cutoff`` and ``falloff`` shape the ramp filter (see :func:`ramp_filter`).
    """
    n_tilts, height, width = images.shape
    filtered = ramp_filter(images, cutoff, falloff)
    columns = np.ascontiguousarray(filtered.transpose(0, 2, 1)).reshape(n_tilts * width, height)
    return (back_projector @ columns).reshape(depth, width, height).transpose(0, 2, 1)


def reconstruct_tilt_series(
    density: np.ndarray,
    voxel_size: float,
    tilt_series: TiltSeriesParameters,
    ice_thickness_a: float,
    rng: np.random.Generator,
    reference_density: np.ndarray | None = None,
) -> np.ndarray:
    """Image a clean density over the tilt series and reconstruct it (WBP).

    ``reference_density`` (e.g. the targets only) sets the noise level for the
    SNR; ``density`` itself when None. Returns a (z, y, x) float32 tomogram of
    zero mean and unit variance where dense matter is dark.
    """
    depth, _, width = density.shape
    projector, back_projector = projection_operators(depth, width, tilt_series.angles_deg)
    reference = None if reference_density is None else project(reference_density, projector)
    images = image_tilt_series(
        project(density, projector), voxel_size, tilt_series, ice_thickness_a, rng, reference
    )
    tomogram = weighted_back_projection(
        images, back_projector, depth, tilt_series.radial_cutoff, tilt_series.radial_falloff
    )
    tomogram -= tomogram.mean()
    tomogram /= tomogram.std()
    return tomogram
