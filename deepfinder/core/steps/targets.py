"""The targets step: a training label map painted from particle positions."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import InputError
from ..particles import ParticleTable
from ..targets import check_class_ids, shape_targets, sphere_targets


def make_targets(
    shape_zyx: tuple[int, int, int],
    particles: ParticleTable,
    *,
    radius_voxels: Mapping[int, float] | None = None,
    masks: Mapping[int, np.ndarray] | None = None,
    initial_labels: np.ndarray | None = None,
    tomogram: str = "the tomogram",
) -> np.ndarray:
    """The label map of one tomogram: a ball or a mask of the particle's class at each particle.

    Parameters
    ----------
    shape_zyx : tuple of 3 int
        Shape of the tomogram, (z, y, x).
    particles : ParticleTable
        The tomogram's particles, positions in its voxels.
    radius_voxels : {class: radius}, optional
        Ball radius of each class in voxels; give this or ``masks``.
    masks : {class: (z, y, x) bool array}, optional
        Binary mask of each class (:func:`deepfinder.core.targets.mask_from_density`), rotated by
        each particle's orientation.
    initial_labels : (z, y, x) int array, optional
        Label map to paint on (e.g. membranes); particles replace it.
    tomogram : str
        The tomogram's name in the error raised when no particle lies in it.

    Returns
    -------
    (z, y, x) uint8 array

    Raises
    ------
    InputError
        For a class id that cannot be a label, or when no particle lies in the tomogram (positions in
        other units than its voxels, or another tomogram's particles).
    """
    classes = check_class_ids(particles)
    if (radius_voxels is None) == (masks is None):
        raise ValueError("give exactly one of radius_voxels and masks")
    if radius_voxels is not None:
        labels = sphere_targets(shape_zyx, particles, radius_voxels, initial_labels)
    else:
        labels = shape_targets(shape_zyx, particles, masks, initial_labels)
    if not np.isin(labels, classes).any():
        raise InputError(
            f"no particle lies in {tomogram} {tuple(shape_zyx)[::-1]} (x, y, z): "
            "check the coordinates' voxel size and tomogram id"
        )
    return labels
