"""The cluster step: a label map turned into a particle table, optionally cut by score."""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import io, tables
from ..cluster import check_label_map, find_clusters
from ..errors import InputError, about_file
from ..particles import ParticleTable
from ..roi import read_mask_for
from ..segment import score_map_paths, unbin_positions
from ..settings import AUTOMATIC_THRESHOLD, ClusterSettings, SettingError, per_class
from ..threshold import cut_by_score, read_thresholds, write_threshold_report


@dataclass(frozen=True)
class ClusterResult:
    """What a cluster step wrote.

    Attributes
    ----------
    particles : ParticleTable
        The particles written (after the score cut), positions in tomogram voxels.
    classes : list of int
        The classes of the label map.
    lost : {class: count} or None
        Picks each class lost to the score threshold (None without a threshold).
    """

    particles: ParticleTable
    classes: list[int]
    lost: dict[int, int] | None


def cluster_files(
    labels_path: str | os.PathLike,
    output_path: str | os.PathLike,
    settings: ClusterSettings,
    *,
    scores_path: str | os.PathLike | None = None,
    score_maps: Mapping[int, str | os.PathLike] | None = None,
    tomo_id: str | None = None,
    label_scale: float = 1.0,
    mask_path: str | os.PathLike | None = None,
    mask_voxel_size: float | None = None,
    thresholds_path: str | os.PathLike | None = None,
    threshold_report_path: str | os.PathLike | None = None,
    sizes_path: str | os.PathLike | None = None,
    output_format: str | None = None,
) -> ClusterResult:
    """Find the particles of the label map ``labels_path`` and write them to ``output_path``.

    Parameters
    ----------
    labels_path : path
        Label map (MRC) of a segmentation.
    output_path : path
        Particle table to write, in the format of its extension or ``output_format``.
    settings : ClusterSettings
        The class radii (required), minimum sizes, bandwidths and score thresholds, and the
        size rules of the clustering.
    scores_path, score_maps : optional
        The segmentation's ``--scores`` path, or a score map per class: a particle's score is
        the mean class score over its cluster (else its size in voxels).
    tomo_id : str, optional
        Tomogram id of the rows (default: the label map's file stem).
    label_scale : float
        Tomogram voxels per label-map voxel: positions are written in tomogram voxels.
    mask_path, mask_voxel_size : optional
        Only particles whose centre lies in this mask are kept; the mask's Angstrom per voxel
        where its header states none.
    thresholds_path : path, optional
        Per-class thresholds written by the evaluate step, in place of ``settings.threshold``.
    threshold_report_path : path, optional
        With a threshold: every pick's score, the thresholds and the picks each class lost (JSON).
    sizes_path : path, optional
        Each written particle's cluster size in voxels, one per line.

    Raises
    ------
    InputError
        For an unreadable or inconsistent input, naming the file.
    SettingError
        For a per-class value that cannot be read or misses a class.
    """
    settings.check()
    if settings.threshold and thresholds_path:
        raise SettingError("threshold", f"a threshold and the thresholds of {thresholds_path}: give one")
    if not settings.radius:
        raise SettingError(
            "radius", "give the particle radius in voxels of the label map, for all classes or per class"
        )
    cut = bool(settings.threshold) or thresholds_path is not None
    if threshold_report_path and not cut:
        raise InputError("--threshold-report needs --threshold or --thresholds-from")
    labels = io.read_volume(labels_path)
    with about_file(labels_path):
        check_label_map(labels)
    mask = read_mask_for(mask_path, labels_path, labels.shape, mask_voxel_size) if mask_path else None
    classes = [int(k) for k in np.unique(labels) if k > 0]
    if not classes:
        warnings.warn(f"{labels_path} holds background only: the particle table is empty", stacklevel=2)
    tomo = tomo_id or Path(labels_path).stem
    clusters = find_clusters(
        labels,
        per_class(settings.radius, classes, "radius", every_class=True) if classes else {},
        per_class(settings.min_size, classes, "min_size", int) if settings.min_size and classes else None,
        _score_maps(labels_path, labels.shape, classes, scores_path, score_maps),
        tomo,
        per_class(settings.bandwidth, classes, "bandwidth", every_class=True)
        if settings.bandwidth and classes
        else None,
        settings,
        mask=mask,
    )
    particles, sizes, lost = clusters.particles, clusters.sizes, None
    if cut:
        if thresholds_path:
            thresholds, source = read_thresholds(thresholds_path), f"from {thresholds_path}"
        elif settings.threshold == (AUTOMATIC_THRESHOLD,):
            thresholds, source = None, "automatic"
        else:
            thresholds, source = per_class(settings.threshold, classes, "threshold"), "given"
        scores_are_sizes = not (scores_path or score_maps)
        keep, report = cut_by_score(particles, thresholds, log_scale=scores_are_sizes, source=source)
        if threshold_report_path:
            write_threshold_report(threshold_report_path, report)
        particles, sizes, lost = particles.select(keep), sizes[keep], report.lost
    voxel_size, shape_zyx = io.read_voxel_size(labels_path) or 1.0, labels.shape
    if label_scale != 1:
        particles = dataclasses.replace(particles, xyz=unbin_positions(particles.xyz, label_scale))
        voxel_size, shape_zyx = voxel_size / label_scale, tuple(round(label_scale * n) for n in shape_zyx)
    if sizes_path:
        with io.atomic_output(sizes_path) as temporary:
            np.savetxt(temporary, sizes.astype(int), fmt="%d")
    tables.write_table(
        output_path,
        particles,
        output_format,
        voxel_size=voxel_size,
        tomograms={tomo: tables.TomogramGeometry(tuple(shape_zyx[::-1]), voxel_size)},
    )
    return ClusterResult(particles, classes, lost)


def _score_maps(
    labels_path: str | os.PathLike,
    shape_zyx: tuple[int, ...],
    classes: list[int],
    scores_path: str | os.PathLike | None,
    given: Mapping[int, str | os.PathLike] | None,
) -> dict[int, np.ndarray] | None:
    """The score map of each class of the label map, checked to be on its grid (None without)."""
    if not (scores_path or given):
        return None
    paths = given or score_map_paths(scores_path, max(classes, default=0) + 1)
    paths = {k: Path(p) for k, p in paths.items()}
    missing = [str(p) for k, p in paths.items() if k in classes and not p.exists()]
    if missing:
        raise InputError(f"score maps not found: {', '.join(missing)}")
    score_maps = {k: io.read_volume(p) for k, p in paths.items() if k in classes}
    for k, score_map in score_maps.items():
        if score_map.shape != shape_zyx:
            raise InputError(
                f"{paths[k]} has shape {score_map.shape} but {labels_path} {shape_zyx}: "
                "give the --scores of the segmentation that wrote the label map"
            )
    return score_maps
