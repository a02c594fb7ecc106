"""The targets step: a training label map painted from particle positions."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np

from .. import io
from ..errors import InputError, about_file
from ..particles import ParticleTable
from ..settings import TargetSettings, per_class
from ..targets import check_class_ids, mask_from_density, shape_targets, sphere_targets, start_labels


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


def make_targets_files(
    tomogram_path: str | os.PathLike,
    particles: ParticleTable,
    particles_path: str | os.PathLike,
    out_path: str | os.PathLike,
    settings: TargetSettings,
    *,
    radius: Sequence[str] | None = None,
    mask_paths: Mapping[int, str | os.PathLike] | None = None,
    initial_labels_path: str | os.PathLike | None = None,
) -> np.ndarray:
    """Paint the label map of the tomogram file ``tomogram_path`` and write it to ``out_path`` (MRC).

    Parameters
    ----------
    tomogram_path : path
        The tomogram (MRC): the map's shape and voxel size.
    particles : ParticleTable
        Its particles, read from ``particles_path`` (named in the errors), positions in its voxels.
    out_path : path
        The label map to write.
    settings : TargetSettings
        ``mask_threshold`` turns each mask file's density into the particle's mask.
    radius : sequence of str, optional
        Ball radius in voxels per class (:func:`deepfinder.core.settings.per_class`); give this or
        ``mask_paths``.
    mask_paths : {class: path}, optional
        Mask or density (MRC, centred at size // 2) of each class.
    initial_labels_path : path, optional
        Label map (MRC) of the tomogram's shape to paint on.

    Returns
    -------
    The label map written, (z, y, x) uint8.
    """
    settings.check()
    shape = io.read_volume(tomogram_path).shape
    with about_file(particles_path):
        classes = check_class_ids(particles)
    initial = None
    if initial_labels_path:
        with about_file(initial_labels_path):
            initial = start_labels(shape, io.read_volume(initial_labels_path))
        io.warn_if_other_sampling(initial_labels_path, tomogram_path)
    if radius:
        footprint = {"radius_voxels": per_class(radius, classes, "radius", every_class=True)}
    else:
        footprint = {"masks": {}}
        for c, path in (mask_paths or {}).items():
            with about_file(path):
                density = io.read_volume(path, mmap=False)
                footprint["masks"][c] = mask_from_density(density, settings.mask_threshold)
    with about_file(particles_path):
        labels = make_targets(
            shape, particles, initial_labels=initial, tomogram=str(tomogram_path), **footprint
        )
    io.write_volume(out_path, labels, io.read_voxel_size(tomogram_path) or 1.0)
    return labels
