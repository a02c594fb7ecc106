"""Synthetic cryo-electron tomograms with known particles.

The specimen is a slab of ice holding particles of several classes at random,
non-overlapping positions and orientations, plus things that are not targets:
lipid vesicles, gold beads and the edge of a carbon film. It is imaged the way
a microscope does: projection over a single-axis tilt series around Y, a
contrast transfer function, shot or Gaussian noise at a chosen SNR, and
reconstruction by weighted back-projection. The missing wedge, CTF fringes and
Z elongation therefore arise from the image formation instead of being painted.

Conventions: arrays (z, y, x); positions in voxels (x, y, z); densities in units
of protein contrast over ice (1 = protein); tilt angles in degrees.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage, signal, sparse
from scipy.spatial.transform import Rotation

from .io import read_particles_xml, write_particles_csv, write_volume
from .particles import ParticleTable
from .shapes import ParticleShape, load_shape, procedural_shape, rotate_density

GOLD_DENSITY = 20.0  # gold is ~45x denser than protein over ice; capped to stay a weak phase object
CARBON_DENSITY = 2.5
LIPID_HEAD_DENSITY = 1.0
PHASE_PER_ANGSTROM = 1e-3  # phase shift (rad) per Angstrom of protein: ~0.25 rad across a ribosome
SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SHREC19_CLASSES = (
    "1bxn",
    "1qvr",
    "1s3x",
    "1u6g",
    "2cg9",
    "3cf3",
    "3d2f",
    "3gl1",
    "3h84",
    "3qm1",
    "4b4t",
    "4d8q",
)


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
            raise ValueError(f"snr must be > 0 (var(signal)/var(noise)), got {self.snr}")
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


@dataclass(frozen=True)
class SpecimenParameters:
    """What the tomogram contains.

    Attributes
    ----------
    shape_zyx : (int, int, int)
        Tomogram size, voxels.
    voxel_size : float
        Angstrom per voxel.
    particles_per_class : int
        Copies of each class placed at random (ignored when a layout is given).
    slab_thickness_voxels : int, optional
        Ice thickness, centred in Z; the whole volume when None.
    n_vesicles, n_gold_beads : int
        Lipid vesicles (bilayer shells) and 10 nm gold beads, not targets.
    carbon_edge : bool
        Add the edge of a carbon support film along one side, not a target.
    """

    shape_zyx: tuple[int, int, int]
    voxel_size: float
    particles_per_class: int = 20
    slab_thickness_voxels: int | None = None
    n_vesicles: int = 0
    n_gold_beads: int = 0
    carbon_edge: bool = False

    def __post_init__(self):
        if len(self.shape_zyx) != 3 or min(self.shape_zyx) < 8:
            raise ValueError(f"shape_zyx must be 3 sizes >= 8 voxels, got {self.shape_zyx}")
        if not self.voxel_size > 0:
            raise ValueError(f"voxel_size must be > 0 Angstrom, got {self.voxel_size}")
        if self.particles_per_class < 0 or self.n_vesicles < 0 or self.n_gold_beads < 0:
            raise ValueError("particles_per_class, n_vesicles and n_gold_beads must be >= 0")
        if self.slab_thickness_voxels is not None and not 0 < self.slab_thickness_voxels <= self.shape_zyx[0]:
            raise ValueError(
                f"slab_thickness_voxels must be in 1..{self.shape_zyx[0]} (the Z size), "
                f"got {self.slab_thickness_voxels}"
            )

    @property
    def slab_z_range(self) -> tuple[int, int]:
        """First and one-past-last Z index of the ice slab."""
        depth = self.shape_zyx[0]
        thickness = depth if self.slab_thickness_voxels is None else self.slab_thickness_voxels
        start = (depth - thickness) // 2
        return start, start + thickness


@dataclass
class SimulatedTomogram:
    """A simulated tomogram and its ground truth.

    Attributes
    ----------
    tomogram : (z, y, x) float32
        Reconstruction, zero mean, unit variance; particles dark.
    density : (z, y, x) float32
        The clean specimen (particles and distractors), protein = 1.
    labels : (z, y, x) int8
        Class id of each voxel inside a particle's mask, 0 elsewhere.
    occupancy : (z, y, x) int32
        ``i + 1`` inside the space taken by row ``i`` of ``particles`` (its mask
        with pores and cavities filled, see :func:`occupied_space`), 0 elsewhere.
    particles : ParticleTable
        Class, position (voxels) and orientation of every particle.
    """

    tomogram: np.ndarray
    density: np.ndarray
    labels: np.ndarray
    occupancy: np.ndarray
    particles: ParticleTable


# --------------------------------------------------------------------------- specimen


def _rotated(shape: ParticleShape, rotation: np.ndarray, shift_zyx=(0.0, 0.0, 0.0)):
    density = rotate_density(shape.density, rotation, shift_zyx)
    return density, density > shape.threshold


def _find_room(
    occupied: np.ndarray,
    box: np.ndarray,
    centre_in_box: np.ndarray,
    lowest: np.ndarray,
    highest: np.ndarray,
    rng: np.random.Generator,
    max_tries: int,
):
    """A random centre (z, y, x) in [lowest, highest] where ``box`` overlaps no occupied voxel.

    Marks the box as occupied and returns the centre, or None if there is no room.
    Random tries are fast while the volume is sparse; when they fail, every
    position is tested at once (overlap counts by FFT correlation).
    """

    def claim(zyx):
        region = tuple(slice(c, c + s) for c, s in zip(zyx - centre_in_box, box.shape))
        if np.any(occupied[region] & box):
            return False
        occupied[region] |= box
        return True

    for _ in range(max_tries):
        zyx = rng.integers(lowest, highest + 1)
        if claim(zyx):
            return zyx
    overlap = signal.fftconvolve(
        occupied.astype(np.float32), box[::-1, ::-1, ::-1].astype(np.float32), mode="valid"
    )
    # overlap[i] counts the occupied voxels under the box whose corner is at i.
    corners = np.argwhere(overlap < 0.5)
    centres = corners + centre_in_box
    centres = centres[np.all((centres >= lowest) & (centres <= highest), axis=1)]
    if not len(centres):
        return None
    zyx = centres[rng.integers(len(centres))]
    return zyx if claim(zyx) else None


def place_particles(
    shapes: list[ParticleShape],
    particles_per_class: int,
    occupied: np.ndarray,
    rng: np.random.Generator,
    gap_voxels: int = 1,
    max_tries: int = 500,
) -> ParticleTable:
    """Random non-overlapping positions and random orientations.

    Parameters
    ----------
    shapes : list of ParticleShape
        Class ``i + 1`` is ``shapes[i]``.
    particles_per_class : int
        Copies of each class.
    occupied : (z, y, x) bool array
        Voxels no particle may touch (outside the ice, vesicle membranes...);
        updated in place with the placed particles' masks.
    rng : numpy Generator
    gap_voxels : int
        Least distance between particles' masks (and to occupied voxels), so
        that neighbours touch no more than in a real specimen's label map.
    max_tries : int
        Random positions tried per particle before searching all positions.

    Raises
    ------
    ValueError
        When the particles cannot fit (too many, or too large for the free space).
    """
    needed = particles_per_class * sum(np.count_nonzero(shape.mask) for shape in shapes)
    free = occupied.size - np.count_nonzero(occupied)
    if needed > 0.5 * free:
        raise ValueError(
            f"Impossible packing: the particles would fill {needed / max(free, 1):.0%} of the "
            "free specimen volume (at most 50% is possible); lower particles_per_class or "
            "enlarge the volume"
        )
    # Large particles first: they are the hardest to fit.
    order = np.argsort([-np.count_nonzero(s.mask) for s in shapes], kind="stable")
    class_ids, positions, rotations = [], [], []
    size = np.array(occupied.shape)
    for index in order:
        shape = shapes[index]
        for _ in range(particles_per_class):
            rotation = Rotation.random(random_state=rng).as_matrix()
            _, mask = _rotated(shape, rotation)
            if gap_voxels:
                mask = ndimage.binary_dilation(np.pad(mask, gap_voxels), iterations=gap_voxels)
            nonzero = np.nonzero(mask)
            low = np.array([a.min() for a in nonzero])
            high = np.array([a.max() for a in nonzero])
            centre = np.array(mask.shape) // 2
            box = mask[low[0] : high[0] + 1, low[1] : high[1] + 1, low[2] : high[2] + 1]
            lowest, highest = centre - low, size - 1 - (high - centre)
            if np.any(highest < lowest):
                raise ValueError(
                    f"Impossible packing: a {shape.name!r} particle is larger than the volume "
                    f"{tuple(size)}; enlarge shape_zyx"
                )
            zyx = _find_room(occupied, box, centre - low, lowest, highest, rng, max_tries)
            if zyx is None:
                raise ValueError(
                    f"Impossible packing: placed {len(positions)} particles but found no free "
                    f"room for another {shape.name!r}; lower particles_per_class or enlarge "
                    "the volume"
                )
            class_ids.append(index + 1)
            positions.append(zyx[::-1])
            rotations.append(rotation)
    if not positions:
        return ParticleTable.empty()
    return ParticleTable(
        tomo="",
        class_id=np.array(class_ids),
        xyz=np.array(positions, dtype=float),
        rotation=np.array(rotations),
    )


def render_particles(
    shapes: list[ParticleShape], particles: ParticleTable, shape_zyx: tuple[int, int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Density, label map and occupancy map of particles at their positions and orientations.

    Particles may be fractional and may stick out of the volume (they are cut).
    Returns float32 density, int8 labels (class id, inside each mask) and int32
    occupancy (row + 1, inside each particle's :func:`occupied_space`).
    """
    if len(particles) and (particles.class_id.min() < 1 or particles.class_id.max() > len(shapes)):
        raise ValueError(
            f"class_id must be in 1..{len(shapes)} (one per shape), "
            f"got {particles.class_id.min()}..{particles.class_id.max()}"
        )
    if len(shapes) > 127:
        raise ValueError(f"At most 127 classes fit in an int8 label map, got {len(shapes)}")
    density = np.zeros(shape_zyx, dtype=np.float32)
    labels = np.zeros(shape_zyx, dtype=np.int8)
    occupancy = np.zeros(shape_zyx, dtype=np.int32)
    size = np.array(shape_zyx)
    rows = zip(particles.class_id, particles.xyz, particles.rotation)
    for row, (class_id, xyz, rotation) in enumerate(rows):
        shape = shapes[class_id - 1]
        zyx = np.asarray(xyz, dtype=float)[::-1]
        whole = np.round(zyx).astype(int)
        rotated, mask = _rotated(shape, rotation, shift_zyx=zyx - whole)
        corner = whole - np.array(rotated.shape) // 2
        start = np.maximum(corner, 0)
        stop = np.minimum(corner + rotated.shape, size)
        if np.any(stop <= start):
            continue
        target = tuple(slice(a, b) for a, b in zip(start, stop))
        source = tuple(slice(a - c, b - c) for a, b, c in zip(start, stop, corner))
        density[target] += rotated[source]
        labels[target][mask[source]] = class_id
        # Filled pores go to the first particle claiming them; masks themselves do not overlap.
        region = occupancy[target]
        region[occupied_space(mask)[source] & (region == 0)] = row + 1
        region[mask[source]] = row + 1
    return density, labels, occupancy


def occupied_space(mask: np.ndarray, pore_voxels: int = 2) -> np.ndarray:
    """A particle's mask with its cavities and its pores up to ``pore_voxels`` wide filled.

    The space a particle takes for scoring detections (SHREC'19 occupancy rule):
    a detection at the centre of a ring-shaped or barrel-shaped complex such as
    4d8q, whose centre lies in a pore, is on the particle.
    """
    ball = ndimage.generate_binary_structure(3, 1)
    padded = np.pad(mask, pore_voxels + 1)
    closed = ndimage.binary_closing(padded, ball, iterations=pore_voxels)
    inner = tuple(slice(pore_voxels + 1, -pore_voxels - 1) for _ in range(3))
    return ndimage.binary_fill_holes(closed[inner])


def add_vesicles(
    density: np.ndarray,
    occupied: np.ndarray,
    n_vesicles: int,
    voxel_size: float,
    z_range: tuple[int, int],
    rng: np.random.Generator,
    max_tries: int = 200,
) -> None:
    """Add lipid vesicles (bilayer shells, 4 nm between leaflets) in place.

    Radii are drawn in 12-40 nm and kept inside the ice; each membrane is marked
    in ``occupied``. Raises ``ValueError`` when a vesicle finds no room.
    ``max_tries`` random positions are tried before searching all of them.
    """
    thickness_a = (z_range[1] - z_range[0]) * voxel_size
    max_radius_a = min(400.0, thickness_a / 2, min(density.shape[1:]) * voxel_size / 2) - 50 - voxel_size
    if n_vesicles and max_radius_a < 100:
        raise ValueError(
            f"The ice ({thickness_a:.0f} A) or volume is too small for vesicles; "
            "set n_vesicles=0 or enlarge the volume"
        )
    sigma = np.hypot(7.0, 0.5 * voxel_size)  # leaflet width, widened to be sampled by the grid
    for _ in range(n_vesicles):
        radius = rng.uniform(min(120.0, max_radius_a), max_radius_a)
        half = int(np.ceil((radius + 50) / voxel_size))
        z, y, x = np.mgrid[-half : half + 1, -half : half + 1, -half : half + 1] * voxel_size
        distance = np.sqrt(x**2 + y**2 + z**2)
        shell = LIPID_HEAD_DENSITY * (
            np.exp(-((distance - radius - 20) ** 2) / (2 * sigma**2))
            + np.exp(-((distance - radius + 20) ** 2) / (2 * sigma**2))
        )
        forbidden = np.abs(distance - radius) < 35 + voxel_size
        lowest = np.array([z_range[0] + half, half, half])
        highest = np.array([z_range[1] - 1 - half, density.shape[1] - 1 - half, density.shape[2] - 1 - half])
        centre = _find_room(occupied, forbidden, np.full(3, half), lowest, highest, rng, max_tries)
        if centre is None:
            raise ValueError(f"No room for a vesicle of radius {radius:.0f} A; lower n_vesicles")
        density[tuple(slice(c - half, c + half + 1) for c in centre)] += shell.astype(np.float32)


def add_gold_beads(
    density: np.ndarray,
    occupied: np.ndarray,
    n_beads: int,
    voxel_size: float,
    z_range: tuple[int, int],
    rng: np.random.Generator,
    radius_a: float = 50.0,
    max_tries: int = 500,
) -> None:
    """Add 10 nm gold fiducials in place, lying on the top or bottom surface of the ice."""
    radius = radius_a / voxel_size
    half = int(np.ceil(radius)) + 1
    distance = np.sqrt((np.mgrid[-half : half + 1, -half : half + 1, -half : half + 1] ** 2).sum(axis=0))
    bead = (GOLD_DENSITY * np.clip(radius - distance + 0.5, 0, 1)).astype(np.float32)
    footprint = distance < radius + 1
    depth = density.shape[0]
    surfaces = [
        int(np.clip(level, half, depth - 1 - half)) for level in (z_range[0] + half, z_range[1] - 1 - half)
    ]
    for _ in range(n_beads):
        for surface in rng.permutation(surfaces):
            lowest = np.array([surface, half, half])
            highest = np.array([surface, density.shape[1] - 1 - half, density.shape[2] - 1 - half])
            centre = _find_room(occupied, footprint, np.full(3, half), lowest, highest, rng, max_tries)
            if centre is not None:
                density[tuple(slice(c - half, c + half + 1) for c in centre)] += bead
                break
        else:
            raise ValueError("No room for a gold bead on the ice surfaces; lower n_gold_beads")


def add_carbon_edge(
    density: np.ndarray,
    occupied: np.ndarray,
    voxel_size: float,
    z_range: tuple[int, int],
    rng: np.random.Generator,
    film_thickness_a: float = 150.0,
) -> None:
    """Add the wavy edge of a carbon support film on top of the ice, entering from the +X side."""
    depth, height, width = density.shape
    y = np.arange(height)
    waves, phase = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
    edge = width * rng.uniform(0.78, 0.88) + width * 0.04 * np.sin(2 * np.pi * waves * y / height + phase)
    film = max(1, int(round(film_thickness_a / voxel_size)))
    z_top = z_range[1]
    x = np.arange(width)
    # Anti-aliased edge: partial coverage over one voxel.
    coverage = np.clip(x[np.newaxis, :] - edge[:, np.newaxis] + 0.5, 0, 1).astype(np.float32)
    z_start = max(0, z_top - film)
    density[z_start:z_top] += CARBON_DENSITY * coverage
    occupied[z_start:z_top] |= coverage > 0


def build_specimen(
    shapes: list[ParticleShape],
    specimen: SpecimenParameters,
    rng: np.random.Generator,
    layout: ParticleTable | None = None,
):
    """Particle density, distractor density, label map, occupancy map and particle table.

    With a ``layout`` (given positions and orientations), particles are drawn
    first and distractors fill the remaining room; otherwise distractors come
    first and particles are placed at random around them.
    """
    shape_zyx = tuple(specimen.shape_zyx)
    z_range = specimen.slab_z_range
    occupied = np.ones(shape_zyx, dtype=bool)
    occupied[z_range[0] : z_range[1]] = False
    distractors = np.zeros(shape_zyx, dtype=np.float32)

    def add_distractors():
        if specimen.carbon_edge:
            add_carbon_edge(distractors, occupied, specimen.voxel_size, z_range, rng)
        add_vesicles(distractors, occupied, specimen.n_vesicles, specimen.voxel_size, z_range, rng)
        add_gold_beads(distractors, occupied, specimen.n_gold_beads, specimen.voxel_size, z_range, rng)

    if layout is None:
        add_distractors()
        particles = place_particles(shapes, specimen.particles_per_class, occupied, rng)
        density, labels, occupancy = render_particles(shapes, particles, shape_zyx)
    else:
        particles = layout
        density, labels, occupancy = render_particles(shapes, particles, shape_zyx)
        occupied |= occupancy > 0
        add_distractors()
    return density, distractors, labels, occupancy, particles


# --------------------------------------------------------------------------- image formation


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


def simulate_tomogram(
    shapes: list[ParticleShape],
    specimen: SpecimenParameters,
    tilt_series: TiltSeriesParameters = TiltSeriesParameters(),
    seed: int | np.random.SeedSequence = 0,
    layout: ParticleTable | None = None,
    name: str = "",
) -> SimulatedTomogram:
    """Simulate one tomogram in memory.

    Parameters
    ----------
    shapes : list of ParticleShape
        The classes; class id ``i + 1`` is ``shapes[i]``.
    specimen : SpecimenParameters
        Volume, voxel size, crowding and distractors.
    tilt_series : TiltSeriesParameters
        Imaging and noise.
    seed : int
        Same seed, same tomogram.
    layout : ParticleTable, optional
        Fixed particle positions (voxels) and orientations instead of random ones.
    name : str
        Written into the table's ``tomo`` column.
    """
    if not shapes:
        raise ValueError("Give at least one particle shape")
    rng = np.random.default_rng(seed)
    particle_density, distractors, labels, occupancy, particles = build_specimen(
        shapes, specimen, rng, layout
    )
    density = particle_density + distractors
    particles = replace(particles, tomo=np.full(len(particles), name))
    z_range = specimen.slab_z_range
    ice_thickness_a = (z_range[1] - z_range[0]) * specimen.voxel_size
    tomogram = reconstruct_tilt_series(
        density, specimen.voxel_size, tilt_series, ice_thickness_a, rng, particle_density
    )
    return SimulatedTomogram(
        tomogram=tomogram, density=density, labels=labels, occupancy=occupancy, particles=particles
    )


# --------------------------------------------------------------------------- presets and datasets


@dataclass(frozen=True)
class Preset:
    """A ready-made dataset recipe.

    Attributes
    ----------
    shape_names : tuple of str
        Built-in shapes (the bench preset uses the SHREC'19 templates instead).
    specimen, tilt_series : parameters of every tomogram.
    n_tomograms : int
        Default number of tomograms.
    description : str
    """

    shape_names: tuple[str, ...]
    specimen: SpecimenParameters
    tilt_series: TiltSeriesParameters
    n_tomograms: int
    description: str = ""


PRESETS = {
    "tiny": Preset(
        shape_names=("ribosome", "ring", "rod"),
        specimen=SpecimenParameters(
            shape_zyx=(64, 96, 96),
            voxel_size=12.0,
            particles_per_class=20,
            slab_thickness_voxels=48,
            n_vesicles=1,
            n_gold_beads=2,
        ),
        tilt_series=TiltSeriesParameters(defocus_um=6.0, amplitude_contrast=0.1, snr=1.5),
        n_tomograms=3,
        description="3 easy classes in 96 x 96 x 64 voxels at high SNR, for fast tests",
    ),
    "demo": Preset(
        shape_names=("ribosome", "ring", "rod", "globule"),
        specimen=SpecimenParameters(
            shape_zyx=(80, 160, 160),
            voxel_size=12.0,
            particles_per_class=25,
            slab_thickness_voxels=64,
            n_vesicles=2,
            n_gold_beads=3,
            carbon_edge=True,
        ),
        tilt_series=TiltSeriesParameters(defocus_um=6.0, amplitude_contrast=0.1, snr=0.5),
        n_tomograms=4,
        description="4 classes in 160 x 160 x 80 voxels at moderate SNR, with vesicles, gold beads and "
        "a carbon edge",
    ),
    "bench": Preset(
        shape_names=SHREC19_CLASSES,
        specimen=SpecimenParameters(shape_zyx=(200, 512, 512), voxel_size=10.0, n_gold_beads=4),
        tilt_series=TiltSeriesParameters(defocus_um=4.0, amplitude_contrast=0.1, snr=0.1),
        n_tomograms=2,
        description="SHREC'19 layouts and templates, 512 x 512 x 200 at 10 A/voxel, SNR 0.1",
    ),
}


def shrec19_shapes(
    voxel_size: float = 10.0, data_dir: str | os.PathLike = SHARED_DATA
) -> list[ParticleShape]:
    """The 12 SHREC'19 classes in class-label order.

    Densities come from ``templates_10A/<pdb>.mrc``; 4b4t and 4d8q, missing
    there, use the binary ``shrec19/masks/<pdb>.mrc`` (1 nm voxels) smoothed by
    one voxel, so their mask is the SHREC shape and their inside is flat.
    """
    data_dir = Path(data_dir)
    if not (data_dir / "shrec19").is_dir():
        raise ValueError(
            f"The bench preset needs the SHREC'19 data in {data_dir} (shrec19/ and "
            "templates_10A/); it is absent here: use the tiny or demo preset"
        )
    shapes = []
    for name in SHREC19_CLASSES:
        template = data_dir / "templates_10A" / f"{name}.mrc"
        if template.exists():
            # At 3% of the maximum the masks match the SHREC'19 masks' volumes within 5%.
            shapes.append(load_shape(template, voxel_size, threshold_fraction=0.03, name=name))
        else:
            with warnings.catch_warnings():
                # Known: these masks have a zero machine stamp and are read permissively.
                warnings.simplefilter("ignore")
                shapes.append(
                    load_shape(
                        data_dir / "shrec19" / "masks" / f"{name}.mrc",
                        voxel_size,
                        template_voxel_size=10.0,
                        threshold_fraction=0.5,
                        name=name,
                        smooth_voxels=1.0 * 10.0 / voxel_size,
                    )
                )
    return shapes


def shrec19_layout(index: int, data_dir: str | os.PathLike = SHARED_DATA) -> ParticleTable:
    """Positions and orientations of SHREC'19 training tomogram ``index`` (0-8)."""
    path = Path(data_dir) / "shrec19" / "object_list_train.xml"
    if not path.exists():
        raise ValueError(f"SHREC'19 layouts not found at {path}: use the tiny or demo preset")
    table = read_particles_xml(path).of_tomogram(str(index))
    if not len(table):
        raise ValueError(f"{path} has no tomogram {index}; SHREC'19 training tomograms are 0-8")
    return table


def _stderr_progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def simulate_dataset(
    out_dir: str | os.PathLike,
    preset: str = "tiny",
    n_tomograms: int | None = None,
    seed: int = 0,
    progress: bool | Callable[[str], None] = True,
    snr: float | None = None,
    templates: list[str | os.PathLike] | None = None,
    template_voxel_size: float | None = None,
) -> dict:
    """Simulate a dataset of tomograms with ground truth and write it to ``out_dir``.

    For each tomogram ``tomo_000``, ``tomo_001``...: ``<name>.mrc`` (the
    tomogram, voxel size in the header), ``<name>_particles.csv``,
    ``<name>_labels.mrc`` (class ids), ``<name>_occupancy.mrc`` (row ``i`` of
    the CSV is id ``i + 1``). Once: ``classes.json`` (id, name,
    radius_voxels, mask) and ``masks/<class>.mrc``.

    Parameters
    ----------
    out_dir : path
    preset : str
        ``tiny``, ``demo`` or ``bench`` (see ``PRESETS``).
    n_tomograms : int, optional
        The preset's default when None.
    seed : int
        Tomogram ``i`` uses seed ``(seed, i)``: datasets are reproducible.
    progress : bool or callable
        Print progress to stderr, or pass each message to the callable.
    snr : float, optional
        Override the preset's SNR.
    templates : list of paths, optional
        MRC density maps replacing the preset's classes (tiny and demo only),
        resampled to the preset's voxel size.
    template_voxel_size : float, optional
        Voxel size (Angstrom) of the templates when their headers lack it.

    Returns
    -------
    dict
        ``voxel_size`` (Angstrom), ``classes`` (path of classes.json),
        ``tomograms`` (list of dicts with ``name``, ``tomogram``, ``particles``,
        ``labels``, ``occupancy`` paths).
    """
    if preset not in PRESETS:
        raise ValueError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    recipe = PRESETS[preset]
    n_tomograms = recipe.n_tomograms if n_tomograms is None else n_tomograms
    if n_tomograms < 1:
        raise ValueError(f"n_tomograms must be >= 1, got {n_tomograms}")
    tilt_series = recipe.tilt_series if snr is None else replace(recipe.tilt_series, snr=snr)
    specimen = recipe.specimen
    voxel_size = specimen.voxel_size
    report = progress if callable(progress) else (_stderr_progress if progress else (lambda message: None))
    if preset == "bench":
        if templates:
            raise ValueError(
                "The bench preset uses the SHREC'19 templates; custom templates need the tiny or demo preset"
            )
        if n_tomograms > 9:
            raise ValueError(f"SHREC'19 has 9 training layouts; n_tomograms must be <= 9, got {n_tomograms}")
        shapes = shrec19_shapes(voxel_size)
    elif templates:
        shapes = [load_shape(path, voxel_size, template_voxel_size) for path in templates]
    else:
        shapes = [procedural_shape(name, voxel_size) for name in recipe.shape_names]
    names = [shape.name for shape in shapes]
    if len(set(names)) != len(names):
        raise ValueError(f"Class names must be distinct, got {names}; rename the template files")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = []
    for class_id, shape in enumerate(shapes, start=1):
        mask_path = write_volume(
            out_dir / "masks" / f"{shape.name}.mrc", shape.mask.astype(np.int8), voxel_size
        )
        classes.append(
            {
                "id": class_id,
                "name": shape.name,
                "radius_voxels": max(1, int(round(shape.radius_voxels))),
                "mask": str(mask_path.relative_to(out_dir)),
            }
        )
    classes_path = out_dir / "classes.json"
    classes_path.write_text(json.dumps(classes, indent=2) + "\n")

    written = []
    for index in range(n_tomograms):
        name = f"tomo_{index:03d}"
        start = time.perf_counter()
        report(
            f"[{index + 1}/{n_tomograms}] {name}: simulating {preset} tomogram "
            f"{specimen.shape_zyx[2]} x {specimen.shape_zyx[1]} x {specimen.shape_zyx[0]} voxels, "
            f"{len(tilt_series.angles_deg)} tilts, SNR {tilt_series.snr:g}"
        )
        layout = shrec19_layout(index) if preset == "bench" else None
        result = simulate_tomogram(
            shapes,
            specimen,
            tilt_series,
            seed=np.random.SeedSequence([seed, index]),
            layout=layout,
            name=name,
        )
        paths = {
            "name": name,
            "tomogram": write_volume(out_dir / f"{name}.mrc", result.tomogram, voxel_size),
            "particles": write_particles_csv(out_dir / f"{name}_particles.csv", result.particles),
            "labels": write_volume(out_dir / f"{name}_labels.mrc", result.labels, voxel_size),
            "occupancy": write_volume(out_dir / f"{name}_occupancy.mrc", result.occupancy, voxel_size),
        }
        written.append({key: str(value) for key, value in paths.items()})
        report(
            f"[{index + 1}/{n_tomograms}] {name}: {len(result.particles)} particles, "
            f"{time.perf_counter() - start:.1f} s"
        )
    return {"voxel_size": voxel_size, "classes": str(classes_path), "tomograms": written}
