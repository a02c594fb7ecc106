"""Particle shapes for simulation: built-in procedural densities and density maps read from MRC.

A particle class is a density map on a cube of odd edge ``2h + 1`` voxels whose
centre voxel ``h`` is the particle's reference point, scaled so its mean inside
the particle's mask is 1 (one unit of protein contrast over ice). The mask is
``density > threshold``; rotating the density and thresholding again gives the
mask of a rotated copy, so label maps follow each particle's orientation.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from .errors import InputError
from .io import read_volume, read_voxel_size
from .settings import SettingError

SHAPE_NAMES = ("ribosome", "ring", "rod", "globule")
SUPERSAMPLING = 3


@dataclass(frozen=True)
class ParticleShape:
    """Density and mask threshold of one particle class.

    Attributes
    ----------
    name : str
        Class name (a shape name, a PDB id, a file stem...).
    density : (n, n, n) float32 array
        Density (z, y, x), n odd, centre voxel ``n // 2`` is the particle position;
        mean 1 inside the mask, about 0 outside.
    threshold : float
        Density value above which a voxel belongs to the particle.
    """

    name: str
    density: np.ndarray
    threshold: float

    @property
    def mask(self) -> np.ndarray:
        """Binary shape mask (z, y, x)."""
        return self.density > self.threshold

    @property
    def radius_voxels(self) -> float:
        """Radius of the sphere with the particle's volume, in voxels."""
        return float((3 * np.count_nonzero(self.mask) / (4 * np.pi)) ** (1 / 3))


# --------------------------------------------------------------------------- procedural shapes


def _inside(name: str, x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Whether points (Angstrom, relative to the particle centre) lie inside a built-in shape."""
    if name == "ribosome":
        # A large subunit, a smaller flattened subunit on top and a stalk: compact and asymmetric.
        large = x**2 + y**2 + (z + 25) ** 2 < 95**2
        small = ((x - 10) / 85) ** 2 + (y / 60) ** 2 + ((z - 70) / 45) ** 2 < 1
        stalk = (x - 85) ** 2 + (y - 20) ** 2 + (z - 15) ** 2 < 28**2
        return large | small | stalk
    if name == "ring":
        # Torus: major radius 65 A, tube radius 25 A (a hole of 80 A).
        return (np.sqrt(x**2 + y**2) - 65) ** 2 + z**2 < 25**2
    if name == "rod":
        # Capsule along z: 260 A long, 30 A radius.
        return x**2 + y**2 + np.clip(np.abs(z) - 100, 0, None) ** 2 < 30**2
    if name == "globule":
        return (x / 55) ** 2 + (y / 48) ** 2 + (z / 42) ** 2 < 1
    raise ValueError(f"Unknown shape {name!r}; built-in shapes are {', '.join(SHAPE_NAMES)}")


_EXTENT_ANGSTROM = {"ribosome": 125, "ring": 90, "rod": 130, "globule": 55}


def procedural_shape(name: str, voxel_size: float) -> ParticleShape:
    """Render a built-in shape at ``voxel_size`` (Angstrom per voxel).

    Shapes (sizes in Angstrom): ``ribosome`` (two subunits and a stalk, ~260 A),
    ``ring`` (torus, 180 A across, 80 A hole), ``rod`` (260 x 60 A capsule),
    ``globule`` (110 x 96 x 84 A ellipsoid). Edges are anti-aliased by
    supersampling, so the density falls from 1 to 0 over about one voxel.
    """
    if name not in SHAPE_NAMES:
        raise ValueError(f"Unknown shape {name!r}; built-in shapes are {', '.join(SHAPE_NAMES)}")
    _check_voxel_size(voxel_size)
    half = int(np.ceil(_EXTENT_ANGSTROM[name] / voxel_size)) + 2
    n = 2 * half + 1
    sub = (np.arange(n * SUPERSAMPLING) - (n * SUPERSAMPLING - 1) / 2) * voxel_size / SUPERSAMPLING
    z, y, x = np.meshgrid(sub, sub, sub, indexing="ij", sparse=True)
    fine = _inside(name, x, y, z).astype(np.float32)
    density = fine.reshape(n, SUPERSAMPLING, n, SUPERSAMPLING, n, SUPERSAMPLING).mean(axis=(1, 3, 5))
    if not np.any(density > 0.5):
        raise ValueError(f"voxel_size {voxel_size} A is too coarse to render the {name!r} shape")
    return _normalised(name, density, threshold_fraction=0.5)


# --------------------------------------------------------------------------- density maps


def load_shape(
    path: str | os.PathLike,
    voxel_size: float,
    template_voxel_size: float | None = None,
    threshold_fraction: float = 0.05,
    name: str | None = None,
    smooth_voxels: float = 0.0,
) -> ParticleShape:
    """Read a density map (MRC) and resample it to ``voxel_size`` Angstrom per voxel.

    Parameters
    ----------
    path : path
        MRC density map, protein dense (positive); the particle centre is voxel ``n // 2``.
    voxel_size : float
        Target voxel size, Angstrom.
    template_voxel_size : float, optional
        Voxel size of the map in Angstrom; read from the header when not given.
    threshold_fraction : float
        The mask is the density above this fraction of its maximum.
    name : str, optional
        Class name; the file stem by default.
    smooth_voxels : float
        Gaussian sigma (target voxels) applied after resampling, e.g. to soften a binary mask.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"Template file not found: {path}; give an existing MRC density map")
    _check_voxel_size(voxel_size)
    if not 0 < threshold_fraction < 1:
        raise ValueError(f"threshold_fraction must be in (0, 1), got {threshold_fraction}")
    if template_voxel_size is None:
        template_voxel_size = read_voxel_size(path)
        if template_voxel_size <= 0:
            raise InputError(
                f"{path} has no voxel size in its header: give it (template_voxel_size, "
                "--template-voxel-size on the command line)"
            )
    elif not template_voxel_size > 0:
        raise SettingError("template_voxel_size", f"must be > 0 Angstrom, got {template_voxel_size}")
    data = np.asarray(read_volume(path, mmap=False), dtype=np.float32)
    if data.max() <= 0:
        raise InputError(f"{path} holds no positive density; is the contrast inverted?")
    scale = voxel_size / template_voxel_size
    if scale > 1:
        # Anti-alias before sampling more coarsely.
        data = ndimage.gaussian_filter(data, sigma=0.4 * scale)
    data = np.clip(data, 0, None)
    # Half-size covering all density, in target voxels.
    support = data > 0.01 * data.max()
    centre_in = np.array(data.shape) // 2
    distance = np.sqrt(sum((g - c) ** 2 for g, c in zip(np.nonzero(support), centre_in))).max()
    half = int(np.ceil(distance / scale)) + 2
    n = 2 * half + 1
    offset = centre_in - half * scale
    resampled = ndimage.affine_transform(
        data, np.diag(np.full(3, scale)), offset=offset, output_shape=(n, n, n), order=1, mode="constant"
    )
    if smooth_voxels > 0:
        resampled = ndimage.gaussian_filter(resampled, smooth_voxels)
    if not np.any(resampled > threshold_fraction * resampled.max()):
        raise InputError(f"{path} vanishes when resampled to {voxel_size} A/voxel")
    return _normalised(name or path.stem, resampled, threshold_fraction)


def _normalised(name: str, density: np.ndarray, threshold_fraction: float) -> ParticleShape:
    density = np.asarray(density, dtype=np.float32)
    threshold = threshold_fraction * float(density.max())
    mean_inside = float(density[density > threshold].mean())
    return ParticleShape(name=name, density=density / mean_inside, threshold=threshold / mean_inside)


def _check_voxel_size(voxel_size: float) -> None:
    if not voxel_size > 0:
        raise ValueError(f"voxel size must be > 0 Angstrom, got {voxel_size}")


# --------------------------------------------------------------------------- orientation


def rotate_density(
    density: np.ndarray, rotation: np.ndarray, shift_zyx=(0.0, 0.0, 0.0), order: int = 1
) -> np.ndarray:
    """Rotate a centred (z, y, x) density about its centre voxel ``n // 2``.

    ``rotation`` is a 3 x 3 matrix in (x, y, z) order taking template coordinates
    to tomogram coordinates (the :class:`~deepfinder.core.particles.ParticleTable`
    convention); ``shift_zyx`` moves the result by a (sub-voxel) offset.
    """
    rotation = np.asarray(rotation, dtype=float)
    # Output voxel q samples the template at R^T q; both expressed in (z, y, x) order.
    inverse_zyx = rotation.T[::-1, ::-1]
    centre = np.array(density.shape) // 2
    offset = centre - inverse_zyx @ (centre + np.asarray(shift_zyx, dtype=float))
    return ndimage.affine_transform(
        density, inverse_zyx, offset=offset, order=order, mode="constant", cval=0.0
    )
