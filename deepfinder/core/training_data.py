"""The data a training draws its patches from: open volumes, particle positions, held-out
validation particles and the fixed validation patches."""

from __future__ import annotations

import dataclasses
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .cluster import check_label_map
from .errors import InputError
from .io import read_volume, warn_if_other_sampling
from .normalize import tomogram_stats
from .sampling import check_labels_at_particles, draw_patches, particles_inside
from .segment import bin_positions, bin_volume
from .settings import TrainingSettings
from .targets import bin_labels

log = logging.getLogger(__name__)

# Seeds the validation patches apart from any training epoch's generator.
VALIDATION_STREAM = 2**31 - 1


@dataclass(frozen=True)
class PatchSource:
    """Open volumes and the particles patches are centred on (one row per particle).

    Attributes
    ----------
    volumes, labels : lists of (z, y, x) arrays
        Tomograms and their label maps, memory-mapped.
    stats : list of (mean, std)
        Normalisation statistics of each tomogram.
    tomo_index : (n,) int array
        Index into ``volumes`` of each particle.
    centres : (n, 3) array
        Particle positions, (z, y, x) voxels.
    class_ids : (n,) int array
        Particle classes.
    """

    volumes: list
    labels: list
    stats: list
    tomo_index: np.ndarray
    centres: np.ndarray
    class_ids: np.ndarray

    def subset(self, keep: np.ndarray) -> PatchSource:
        """The same volumes with the particles selected by ``keep`` (a mask or indices)."""
        return dataclasses.replace(
            self, tomo_index=self.tomo_index[keep], centres=self.centres[keep], class_ids=self.class_ids[keep]
        )


def open_data(tomograms, label_maps, particles, n_classes, patch_size, role, binning=1) -> PatchSource:
    """Open volumes memory-mapped, check them, and gather the patch centres.

    With ``binning`` 2, the volumes are binned by 2 in memory (:func:`bin_volume`,
    :func:`bin_labels`) and the particle positions follow them (:func:`bin_positions`).
    """
    if not (len(tomograms) == len(label_maps) == len(particles)):
        raise InputError(
            f"Give one label map and one particle table per {role} tomogram: got "
            f"{len(tomograms)} tomograms, {len(label_maps)} label maps, "
            f"{len(particles)} particle tables"
        )
    if not len(tomograms):
        raise InputError(f"No {role} tomograms given")
    volumes, labels, stats, tomo_index, centres, class_ids = [], [], [], [], [], []
    for index, (tomogram_path, label_path, table) in enumerate(zip(tomograms, label_maps, particles)):
        volume = read_volume(tomogram_path)
        label_map = read_volume(label_path)
        try:
            check_label_map(label_map)
        except InputError as error:
            raise InputError(f"{label_path}: {error}") from error
        if label_map.shape != volume.shape:
            raise InputError(
                f"Label map {label_path} has shape {label_map.shape} but tomogram "
                f"{tomogram_path} has {volume.shape}: they must match voxel for voxel"
            )
        warn_if_other_sampling(label_path, tomogram_path)
        if binning == 2:
            log.info("%s: binning the tomogram and its label map by 2", tomogram_path)
            volume, label_map = bin_volume(volume), bin_labels(label_map)
            table = dataclasses.replace(table, xyz=bin_positions(table.xyz))
        if min(volume.shape) < patch_size:
            raise InputError(
                f"Patch size {patch_size} is larger than tomogram {tomogram_path} "
                f"{volume.shape}: use a patch size <= {min(volume.shape) // 4 * 4}"
            )
        try:
            stats.append(tomogram_stats(volume))
        except InputError as error:
            raise InputError(f"Tomogram {tomogram_path}: {error}") from error
        label_range = (int(label_map.min()), int(label_map.max()))
        if label_range[0] < 0 or label_range[1] >= n_classes:
            raise InputError(
                f"Label map {label_path} holds labels {label_range[0]}..{label_range[1]} "
                f"but training is for {n_classes} classes (0..{n_classes - 1})"
            )
        bad = sorted({int(c) for c in table.class_id} - set(range(n_classes)))
        if bad:
            raise InputError(
                f"Particles of {tomogram_path} have class id(s) {bad}, outside "
                f"1..{n_classes - 1} for {n_classes} classes (0: background points)"
            )
        n_background = int(np.sum(table.class_id == 0))
        if n_background:
            log.info("%s: %d background points (class 0) centre patches too", tomogram_path, n_background)
        table = particles_inside(table, volume.shape, str(tomogram_path))
        check_labels_at_particles(label_map, table, patch_size, f"Label map {label_path}")
        volumes.append(volume)
        labels.append(label_map)
        tomo_index.append(np.full(len(table), index))
        centres.append(table.zyx)
        class_ids.append(table.class_id)
    return PatchSource(
        volumes,
        labels,
        stats,
        np.concatenate(tomo_index),
        np.concatenate(centres),
        np.concatenate(class_ids),
    )


def check_classes_present(class_ids, n_classes):
    missing = sorted(set(range(1, n_classes)) - {int(c) for c in class_ids})
    if missing:
        raise InputError(
            f"Class(es) {missing} have no training particles (inside the volumes): "
            "patches are centred on particles, so the network would never learn "
            "them; add positions or lower n_classes"
        )


def hold_out(data: PatchSource, fraction: float, rng: np.random.Generator) -> tuple[PatchSource, PatchSource]:
    """Split particles into training and validation, ``fraction`` of each class (at least one)."""
    held = np.zeros(len(data.class_ids), dtype=bool)
    for class_id in np.unique(data.class_ids):
        rows = np.flatnonzero(data.class_ids == class_id)
        if len(rows) < 2:
            warnings.warn(
                f"Class {class_id} has a single particle: it is used for training only", stacklevel=3
            )
            continue
        n_held = min(len(rows) - 1, max(1, round(fraction * len(rows))))
        held[rng.choice(rows, size=n_held, replace=False)] = True
    return data.subset(~held), data.subset(held)


def validation_patches(validation: PatchSource, settings: TrainingSettings) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (tomogram, origin) of every validation patch, class-balanced."""
    return draw_patches(
        validation.tomo_index,
        validation.centres,
        validation.class_ids,
        [volume.shape for volume in validation.volumes],
        settings.batch_size * settings.validation_steps,
        patch_size=settings.patch_size,
        shift_voxels=settings.shift_voxels,
        rng=np.random.default_rng([settings.seed, VALIDATION_STREAM]),
    )


def open_sources(
    training: tuple[Sequence, Sequence, Sequence],
    validation: tuple[Sequence, Sequence, Sequence],
    validation_fraction: float,
    n_classes: int,
    settings: TrainingSettings,
) -> tuple[PatchSource, PatchSource | None]:
    """The training data and the validation data (None: none) of a training.

    ``training`` and ``validation`` are each (tomogram paths, label map paths, particle tables);
    without validation tomograms, ``validation_fraction`` of each class's particles are held out
    (:func:`hold_out`). Every particle class needs training particles.
    """
    data = open_data(*training, n_classes, settings.patch_size, "training", settings.binning)
    held_out = None
    if any(validation):
        if validation_fraction:
            raise ValueError("Give either validation tomograms or validation_fraction, not both")
        held_out = open_data(*validation, n_classes, settings.patch_size, "validation", settings.binning)
    elif validation_fraction:
        data, held_out = hold_out(data, validation_fraction, np.random.default_rng(settings.seed))
    check_classes_present(data.class_ids, n_classes)
    return data, held_out
