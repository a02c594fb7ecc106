"""Training targets: voxel-wise label maps painted from particle positions.

Two footprints are offered, as in the paper: a ball per particle
(:func:`sphere_targets`, radius per class) and the particle's own shape
(:func:`shape_targets`, a binary mask per class rotated by each particle's
orientation). Either can be merged with an existing label volume, e.g. a
membrane segmentation carrying its own class.

Overlap rule
------------
Particle voxels replace the initial labels. Where the footprints of two
particles overlap, a voxel goes to the particle whose centre is nearest
(ties to the lower class id), so the result does not depend on the order of
the table and touching particles are split along the plane between them.

Memory: the label volume (one byte per voxel) is the only full-size array.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from scipy.spatial import cKDTree

from .errors import InputError
from .particles import ParticleTable
from .sampling import particles_inside

MAX_LABEL = 255


def sphere_targets(
    shape_zyx: tuple[int, int, int],
    particles: ParticleTable,
    radius_voxels: Mapping[int, float],
    initial_labels: np.ndarray | None = None,
) -> np.ndarray:
    """Label map with a ball of the class radius at each particle.

    Parameters
    ----------
    shape_zyx : tuple of 3 int
        Shape of the tomogram, (z, y, x).
    particles : ParticleTable
        Particles of this tomogram (the ``tomo`` column is not looked at).
    radius_voxels : mapping int -> float
        Ball radius in voxels for each class id present in ``particles``.
        A voxel belongs to the ball when its centre lies within the radius of
        the (sub-voxel) particle position.
    initial_labels : (z, y, x) int array, optional
        Labels to start from (values 0..255); particle voxels replace them.

    Returns
    -------
    (z, y, x) uint8 array
        0 is background, otherwise the class id (see the module's overlap rule).
    """
    shape_zyx = _check_shape(shape_zyx)
    classes = check_class_ids(particles)
    missing = sorted(set(classes) - set(radius_voxels))
    if missing:
        raise InputError(
            f"No radius given for class(es) {missing}: give radius_voxels for every "
            "class in the particle table"
        )
    radii = {int(c): float(r) for c, r in radius_voxels.items()}
    bad = {c: r for c, r in radii.items() if not r > 0}
    if bad:
        raise InputError(f"Radii must be > 0 voxels, got {bad}")
    labels = start_labels(shape_zyx, initial_labels)
    particles = particles_inside(particles, shape_zyx)
    if not len(particles):
        return labels
    centres = particles.zyx
    particle_radius = np.array([radii[c] for c in particles.class_id])

    def member(k: int, coords: np.ndarray) -> np.ndarray:
        return np.sum((coords - centres[k]) ** 2, axis=1) <= particle_radius[k] ** 2

    _paint(labels, centres, particles.class_id, particle_radius, member)
    return labels


def shape_targets(
    shape_zyx: tuple[int, int, int],
    particles: ParticleTable,
    masks: Mapping[int, np.ndarray],
    initial_labels: np.ndarray | None = None,
) -> np.ndarray:
    """Label map with each class's binary mask, rotated and placed at each particle.

    Parameters
    ----------
    shape_zyx : tuple of 3 int
        Shape of the tomogram, (z, y, x).
    particles : ParticleTable
        Particles of this tomogram with their orientations: a template point
        ``p`` (x, y, z, relative to the mask centre) lands at
        ``xyz + rotation @ p``.
    masks : mapping int -> (z, y, x) bool array
        Binary mask for each class id present in ``particles``, in the frame of
        the subtomogram average, centred at index ``shape // 2`` (the RELION
        and Scipion box-centre convention). See :func:`mask_from_density`.
    initial_labels : (z, y, x) int array, optional
        Labels to start from (values 0..255); particle voxels replace them.

    Returns
    -------
    (z, y, x) uint8 array
        0 is background, otherwise the class id (see the module's overlap rule).

    Notes
    -----
    Each tomogram voxel is mapped back into the mask frame and takes the
    nearest mask voxel, so rotated masks have no holes.
    """
    shape_zyx = _check_shape(shape_zyx)
    classes = check_class_ids(particles)
    missing = sorted(set(classes) - set(masks))
    if missing:
        raise InputError(
            f"No mask given for class(es) {missing}: give a mask for every class in the particle table"
        )
    masks = {int(c): np.asarray(m).astype(bool) for c, m in masks.items()}
    for class_id, mask in masks.items():
        if mask.ndim != 3:
            raise InputError(f"Mask of class {class_id} must be a 3D (z, y, x) array, got shape {mask.shape}")
        if not mask.any():
            raise InputError(f"Mask of class {class_id} is empty: lower the threshold used to make it")
    labels = start_labels(shape_zyx, initial_labels)
    particles = particles_inside(particles, shape_zyx)
    if not len(particles):
        return labels
    mask_centre = {c: np.array(m.shape) // 2 for c, m in masks.items()}
    mask_extent = {
        c: float(np.sqrt(np.max(np.sum((np.argwhere(m) - mask_centre[c]) ** 2, axis=1))))
        for c, m in masks.items()
    }
    centres = particles.zyx
    # The table's rotations act on (x, y, z) vectors; reversing both axes gives
    # the same rotation acting on (z, y, x) vectors.
    rotations_zyx = particles.rotation[:, ::-1, ::-1]
    extents = np.array([mask_extent[c] for c in particles.class_id])

    def member(k: int, coords: np.ndarray) -> np.ndarray:
        class_id = int(particles.class_id[k])
        mask = masks[class_id]
        # Inverse rotation: template offset = R^T (voxel - centre), written for row vectors.
        template = np.rint((coords - centres[k]) @ rotations_zyx[k] + mask_centre[class_id]).astype(int)
        inside = np.all((template >= 0) & (template < mask.shape), axis=1)
        result = np.zeros(len(coords), dtype=bool)
        result[inside] = mask[tuple(template[inside].T)]
        return result

    _paint(labels, centres, particles.class_id, extents, member)
    return labels


def mask_from_density(density: np.ndarray, threshold: float) -> np.ndarray:
    """Binary particle mask from a density map (e.g. a subtomogram average).

    Parameters
    ----------
    density : (z, y, x) array
        Density with the particle brighter than the background (invert
        first if the particle is dark).
    threshold : float
        Voxels with density strictly above it belong to the particle.

    Returns
    -------
    (z, y, x) bool array
    """
    density = np.asarray(density, dtype=np.float32)
    if density.ndim != 3:
        raise InputError(f"The density must be a 3D (z, y, x) array, got shape {density.shape}")
    if not np.all(np.isfinite(density)):
        raise InputError("The density contains NaN or infinite values")
    mask = density > threshold
    if not mask.any():
        raise InputError(
            f"No voxel of the density is above the threshold {threshold} "
            f"(density range {density.min():.4g} .. {density.max():.4g}): lower it"
        )
    if mask.all():
        raise InputError(
            f"Every voxel of the density is above the threshold {threshold} "
            f"(density range {density.min():.4g} .. {density.max():.4g}): raise it"
        )
    return mask


def bin_labels(label_map: np.ndarray) -> np.ndarray:
    """A label map binned by 2, for a model trained at twice the voxel size.

    Each binned voxel takes the class holding at least half of its 2 x 2 x 2
    voxels (the one holding most where two hold half each, ties to the lower
    class), else background; odd edges repeat their last voxel, as
    :func:`deepfinder.core.segment.bin_volume` does for the tomogram. Thin
    parts of a particle (under 2 voxels across) thus become background.

    Parameters
    ----------
    label_map : (z, y, x) array of integer labels 0..255

    Returns
    -------
    (ceil(z / 2), ceil(y / 2), ceil(x / 2)) uint8 array
    """
    labels = np.asarray(label_map)
    if labels.ndim != 3:
        raise InputError(f"The label map must be a 3D (z, y, x) array, got shape {labels.shape}")
    odd = [(0, size % 2) for size in labels.shape]
    labels = np.pad(labels, odd, mode="edge") if any(pad for _, pad in odd) else labels
    # The 8 voxels of each 2x2x2 block as one strided view per corner: each class is counted
    # on eighth-size arrays, with no sort of the whole map to find the classes present.
    corners = [labels[dz::2, dy::2, dx::2] for dz in (0, 1) for dy in (0, 1) for dx in (0, 1)]
    binned = np.zeros(corners[0].shape, dtype=np.uint8)
    most = np.full(corners[0].shape, 3, dtype=np.uint8)  # a class needs 4 of the 8 voxels
    for k in range(1, int(labels.max()) + 1):
        count = np.zeros(corners[0].shape, dtype=np.uint8)
        for corner in corners:
            count += corner == k
        wins = count > most
        binned[wins] = k
        most[wins] = count[wins]
    return binned


# --------------------------------------------------------------------------- helpers


def _check_shape(shape_zyx) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape_zyx)
    if len(shape) != 3 or min(shape) < 1:
        raise InputError(f"shape_zyx must be 3 positive sizes (z, y, x), got {shape_zyx}")
    return shape


def check_class_ids(particles: ParticleTable) -> list[int]:
    """The sorted class ids of ``particles``; :class:`InputError` if one cannot be a label (1..255)."""
    classes = sorted(int(c) for c in np.unique(particles.class_id))
    bad = [c for c in classes if not 1 <= c <= MAX_LABEL]
    if bad:
        raise InputError(
            f"particle class ids must be in 1..{MAX_LABEL} (0 is background), got {bad}: renumber the classes"
        )
    return classes


def start_labels(shape_zyx, initial_labels: np.ndarray | None) -> np.ndarray:
    """``initial_labels`` as the uint8 label map to paint on (zeros if None); :class:`InputError`
    if it is not a map of integer labels 0..255 of shape ``shape_zyx``."""
    if initial_labels is None:
        return np.zeros(shape_zyx, dtype=np.uint8)
    initial = np.asarray(initial_labels)
    if initial.shape != shape_zyx:
        raise InputError(
            f"the initial label map has shape {initial.shape} but the tomogram "
            f"has {shape_zyx}: they must match voxel for voxel"
        )
    if initial.size and (
        initial.min() < 0 or initial.max() > MAX_LABEL or not np.array_equal(initial, np.round(initial))
    ):
        raise InputError(
            f"the initial label map must hold integer labels 0..{MAX_LABEL}: give a label map, not a tomogram"
        )
    return initial.astype(np.uint8)


def _paint(
    labels: np.ndarray,
    centres: np.ndarray,
    class_ids: np.ndarray,
    extents: np.ndarray,
    member: Callable[[int, np.ndarray], np.ndarray],
) -> None:
    """Write each particle's footprint into ``labels`` with the nearest-centre overlap rule.

    ``member(k, coords)`` tells which (m, 3) voxel coordinates lie in particle
    ``k``'s footprint; ``extents[k]`` bounds the footprint's distance from its centre.
    """
    shape = np.array(labels.shape)
    tree = cKDTree(centres)
    reach = float(extents.max())
    for k in range(len(centres)):
        low = np.maximum(np.floor(centres[k] - extents[k]).astype(int), 0)
        high = np.minimum(np.ceil(centres[k] + extents[k]).astype(int) + 1, shape)
        coords = np.stack(
            np.meshgrid(*(np.arange(lo, hi) for lo, hi in zip(low, high)), indexing="ij"), axis=-1
        ).reshape(-1, 3)
        coords = coords[member(k, coords)]
        if not len(coords):
            continue
        distance = np.sqrt(np.sum((coords - centres[k]) ** 2, axis=1))
        keep = np.ones(len(coords), dtype=bool)
        for j in tree.query_ball_point(centres[k], extents[k] + reach):
            if j == k or np.linalg.norm(centres[j] - centres[k]) > extents[k] + extents[j]:
                continue
            other = np.sqrt(np.sum((coords - centres[j]) ** 2, axis=1))
            tie_won = (class_ids[j], j) < (class_ids[k], k)
            closer = (other < distance) | ((other == distance) & tie_won)
            if closer.any():
                candidates = np.flatnonzero(closer & keep)
                keep[candidates[member(j, coords[candidates])]] = False
        labels[tuple(coords[keep].T)] = class_ids[k]
