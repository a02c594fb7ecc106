"""The specimen: a slab of ice with particles at non-overlapping positions, and distractors.

Distractors are things that are not targets: lipid vesicles, gold beads and the
edge of a carbon film. Densities are in units of protein contrast over ice
(1 = protein); arrays are (z, y, x), positions in voxels (x, y, z).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage, signal
from scipy.spatial.transform import Rotation

from ..particles import ParticleTable
from ..shapes import ParticleShape, rotate_density

GOLD_DENSITY = 20.0  # gold is ~45x denser than protein over ice; capped to stay a weak phase object
CARBON_DENSITY = 2.5
LIPID_HEAD_DENSITY = 1.0


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
    slab_tilt_deg : float
        Tilt of the ice slab about the Y axis, degrees (a lamella milled at an
        angle): its thickness is measured across the slab, its centre stays the
        volume's centre.
    outside_particles_per_class, outside_gold_beads : int
        Copies of each class and 10 nm gold beads placed outside the slab, in a
        carbon-like layer on its top (particles stuck to carbon or debris on a
        lamella): dense matter that looks like targets but is not in the ground
        truth, where a region-of-interest mask (:meth:`slab_mask`) says not to search.
    ice_beyond_volume_a : float
        Ice above and below the volume, Angstrom in all: the tomogram is a Z crop
        of a thicker specimen. It holds nothing, but the electrons cross it, so it
        lowers the transmission of every tilt, the high tilts most (see
        ``TiltSeriesParameters.inelastic_mean_free_path_a``). Only where the slab
        fills the volume's depth.
    """

    shape_zyx: tuple[int, int, int]
    voxel_size: float
    particles_per_class: int = 20
    slab_thickness_voxels: int | None = None
    n_vesicles: int = 0
    n_gold_beads: int = 0
    carbon_edge: bool = False
    slab_tilt_deg: float = 0.0
    outside_particles_per_class: int = 0
    outside_gold_beads: int = 0
    ice_beyond_volume_a: float = 0.0

    def __post_init__(self):
        if len(self.shape_zyx) != 3 or min(self.shape_zyx) < 8:
            raise ValueError(f"shape_zyx must be 3 sizes >= 8 voxels, got {self.shape_zyx}")
        if not self.voxel_size > 0:
            raise ValueError(f"voxel_size must be > 0 Angstrom, got {self.voxel_size}")
        counts = (
            self.particles_per_class,
            self.n_vesicles,
            self.n_gold_beads,
            self.outside_particles_per_class,
            self.outside_gold_beads,
        )
        if min(counts) < 0:
            raise ValueError(
                "particles_per_class, n_vesicles, n_gold_beads, outside_particles_per_class and "
                "outside_gold_beads must be >= 0"
            )
        if not abs(self.slab_tilt_deg) < 60:
            raise ValueError(f"slab_tilt_deg must be within (-60, 60) degrees, got {self.slab_tilt_deg}")
        if self.slab_thickness_voxels is not None and not 0 < self.slab_thickness_voxels <= self.shape_zyx[0]:
            raise ValueError(
                f"slab_thickness_voxels must be in 1..{self.shape_zyx[0]} (the Z size), "
                f"got {self.slab_thickness_voxels}"
            )
        if self.ice_beyond_volume_a < 0:
            raise ValueError(f"ice_beyond_volume_a must be >= 0 Angstrom, got {self.ice_beyond_volume_a}")
        if self.ice_beyond_volume_a and self.slab_thickness_voxels not in (None, self.shape_zyx[0]):
            raise ValueError(
                "ice_beyond_volume_a needs the slab to fill the volume's depth: "
                "leave slab_thickness_voxels at None or give one of them only"
            )

    @property
    def slab_z_range(self) -> tuple[int, int]:
        """First and one-past-last Z index of the ice slab."""
        depth = self.shape_zyx[0]
        thickness = depth if self.slab_thickness_voxels is None else self.slab_thickness_voxels
        start = (depth - thickness) // 2
        return start, start + thickness

    @property
    def ice_thickness_a(self) -> float:
        """Ice thickness that sets the transmission, Angstrom: the slab's and the ice beyond the volume."""
        start, stop = self.slab_z_range
        return (stop - start) * self.voxel_size + self.ice_beyond_volume_a

    def slab_mask(self) -> np.ndarray:
        """The ice slab, (z, y, x) bool: the voxels of :attr:`slab_z_range`, tilted by
        ``slab_tilt_deg`` about the Y axis through the volume's centre."""
        depth, _, width = self.shape_zyx
        start, stop = self.slab_z_range
        z = np.arange(depth)[:, None] - (start + stop - 1) / 2
        x = np.arange(width)[None, :] - (width - 1) / 2
        angle = np.deg2rad(self.slab_tilt_deg)
        across = z * np.cos(angle) - x * np.sin(angle)
        inside_zx = np.abs(across) <= (stop - start - 1) / 2 + 1e-6
        return np.broadcast_to(inside_zx[:, None, :], self.shape_zyx).copy()


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


def _gold_bead(radius_voxels: float) -> tuple[np.ndarray, np.ndarray]:
    """Density of a gold bead in a cube of odd edge, and the footprint it claims (bool)."""
    half = int(np.ceil(radius_voxels)) + 1
    distance = np.sqrt((np.mgrid[-half : half + 1, -half : half + 1, -half : half + 1] ** 2).sum(axis=0))
    bead = (GOLD_DENSITY * np.clip(radius_voxels - distance + 0.5, 0, 1)).astype(np.float32)
    return bead, distance < radius_voxels + 1


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
    bead, footprint = _gold_bead(radius_a / voxel_size)
    half = bead.shape[0] // 2
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


def add_outside_layer(
    density: np.ndarray, shapes: list[ParticleShape], specimen: SpecimenParameters, rng: np.random.Generator
) -> None:
    """Add, in place, a carbon-like layer above the ice slab holding particle look-alikes and gold.

    The layer fills the space above the slab (higher Z); in it sit
    ``specimen.outside_particles_per_class`` copies of each shape and
    ``specimen.outside_gold_beads`` beads, none in the ground truth.
    """
    slab = specimen.slab_mask()
    z = np.arange(slab.shape[0])[:, None, None]
    above = ~slab & (z > np.argmax(slab, axis=0)[None])
    density += CARBON_DENSITY / 4 * above
    occupied = ~above
    look_alikes = place_particles(shapes, specimen.outside_particles_per_class, occupied, rng)
    density += render_particles(shapes, look_alikes, slab.shape)[0]
    bead, footprint = _gold_bead(50.0 / specimen.voxel_size)
    half = bead.shape[0] // 2
    lowest, highest = np.full(3, half), np.array(slab.shape) - 1 - half
    for _ in range(specimen.outside_gold_beads):
        centre = _find_room(occupied, footprint, np.full(3, half), lowest, highest, rng, 500)
        if centre is None:
            raise ValueError("No room for a gold bead above the ice slab; lower outside_gold_beads")
        density[tuple(slice(c - half, c + half + 1) for c in centre)] += bead


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
    occupied = ~specimen.slab_mask()
    distractors = np.zeros(shape_zyx, dtype=np.float32)

    def add_distractors():
        if specimen.carbon_edge:
            add_carbon_edge(distractors, occupied, specimen.voxel_size, z_range, rng)
        add_vesicles(distractors, occupied, specimen.n_vesicles, specimen.voxel_size, z_range, rng)
        add_gold_beads(distractors, occupied, specimen.n_gold_beads, specimen.voxel_size, z_range, rng)
        if specimen.outside_particles_per_class or specimen.outside_gold_beads:
            add_outside_layer(distractors, shapes, specimen, rng)

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
