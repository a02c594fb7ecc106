"""One simulated tomogram: a specimen imaged over a tilt series, with its ground truth."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ..particles import ParticleTable
from ..shapes import ParticleShape
from .imaging import TiltSeriesParameters, reconstruct_tilt_series
from .specimen import SpecimenParameters, build_specimen


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
    mask : (z, y, x) bool
        The ice slab (:meth:`SpecimenParameters.slab_mask`): where the particles are.
    """

    tomogram: np.ndarray
    density: np.ndarray
    labels: np.ndarray
    occupancy: np.ndarray
    particles: ParticleTable
    mask: np.ndarray


def simulate_tomogram(
    shapes: list[ParticleShape],
    specimen: SpecimenParameters,
    tilt_series: TiltSeriesParameters | None = None,
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
    tilt_series : TiltSeriesParameters, optional
        Imaging and noise; ``TiltSeriesParameters()`` when None.
    seed : int
        Same seed, same tomogram.
    layout : ParticleTable, optional
        Fixed particle positions (voxels) and orientations instead of random ones.
    name : str
        Written into the table's ``tomo`` column.
    """
    if not shapes:
        raise ValueError("Give at least one particle shape")
    tilt_series = TiltSeriesParameters() if tilt_series is None else tilt_series
    rng = np.random.default_rng(seed)
    particle_density, distractors, labels, occupancy, particles = build_specimen(
        shapes, specimen, rng, layout
    )
    density = particle_density + distractors
    particles = replace(particles, tomo=np.full(len(particles), name))
    tomogram = reconstruct_tilt_series(
        density, specimen.voxel_size, tilt_series, specimen.ice_thickness_a, rng, particle_density
    )
    return SimulatedTomogram(
        tomogram=tomogram,
        density=density,
        labels=labels,
        occupancy=occupancy,
        particles=particles,
        mask=specimen.slab_mask(),
    )
