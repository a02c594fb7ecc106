"""Synthetic cryo-electron tomograms with known particles.

The specimen (:mod:`.specimen`) is a slab of ice holding particles of several
classes at random, non-overlapping positions and orientations, plus things that
are not targets: lipid vesicles, gold beads and the edge of a carbon film. It is
imaged the way a microscope does (:mod:`.imaging`): projection over a
single-axis tilt series around Y, a contrast transfer function, shot or Gaussian
noise at a chosen SNR, and reconstruction by weighted back-projection. The
missing wedge, CTF fringes and Z elongation therefore arise from the image
formation instead of being painted. :mod:`.tomogram` puts the two together,
:mod:`.presets` writes whole datasets from ready-made recipes, and
:mod:`.shrec19` reads the SHREC'19 templates and layouts of the bench preset.

Conventions: arrays (z, y, x); positions in voxels (x, y, z); densities in units
of protein contrast over ice (1 = protein); tilt angles in degrees.
"""

from .imaging import (
    TiltSeriesParameters,
    ctf,
    image_tilt_series,
    project,
    projection_operators,
    ramp_filter,
    reconstruct_tilt_series,
    weighted_back_projection,
)
from .presets import PRESETS, Preset, simulate_dataset, write_classes
from .shrec19 import SHREC19_CLASSES, SHREC19_DIR_VARIABLE, shrec19_dir, shrec19_layout, shrec19_shapes
from .specimen import (
    SpecimenParameters,
    add_carbon_edge,
    add_gold_beads,
    add_vesicles,
    build_specimen,
    occupied_space,
    place_particles,
    render_particles,
)
from .tomogram import SimulatedTomogram, simulate_tomogram

__all__ = [
    "PRESETS",
    "SHREC19_CLASSES",
    "SHREC19_DIR_VARIABLE",
    "Preset",
    "SimulatedTomogram",
    "SpecimenParameters",
    "TiltSeriesParameters",
    "add_carbon_edge",
    "add_gold_beads",
    "add_vesicles",
    "build_specimen",
    "ctf",
    "image_tilt_series",
    "occupied_space",
    "place_particles",
    "project",
    "projection_operators",
    "ramp_filter",
    "reconstruct_tilt_series",
    "render_particles",
    "shrec19_dir",
    "shrec19_layout",
    "shrec19_shapes",
    "simulate_dataset",
    "simulate_tomogram",
    "weighted_back_projection",
    "write_classes",
]
