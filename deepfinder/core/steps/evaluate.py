"""The evaluate step: precision, recall and F1 of detections against a reference, per class."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .. import io, tables
from ..errors import InputError, about_file
from ..evaluate import (
    ClassScores,
    SweepCurves,
    check_occupancy_map,
    confusion_by_distance,
    confusion_by_occupancy,
    format_confusion,
    match_by_distance,
    match_by_occupancy,
    precision_recall_f1,
    threshold_sweep,
    write_scores_csv,
    write_sweep_csv,
)
from ..particles import ParticleTable
from ..settings import EVERY_SCORE, EvaluationSettings
from ..threshold import best_thresholds, write_thresholds


@dataclass(frozen=True)
class Evaluation:
    """The figures of one evaluation.

    Attributes
    ----------
    rows : list of ClassScores
        Precision, recall and F1 per class and overall.
    confusion : str
        The detections by the class of the reference particle they lie on, as a table.
    curves : SweepCurves or None
        The same figures at each score threshold of the sweep (None without a sweep).
    best : {class: (threshold, f1)}
        Per class, the score threshold of best F1 in the sweep and that F1 (empty without a sweep).
    """

    rows: list[ClassScores]
    confusion: str
    curves: SweepCurves | None
    best: dict[int, tuple[float, float]]


def evaluate_particles(
    detected: ParticleTable,
    reference: ParticleTable,
    settings: EvaluationSettings,
    occupancy_map: np.ndarray | None = None,
    class_names: Mapping[int, str] | None = None,
) -> Evaluation:
    """Score ``detected`` against ``reference`` (positions in voxels of the same grid).

    The rule is the distance ``settings.tolerance_voxels``, else the occupancy map (reference
    row i is id i+1). Raises :class:`InputError` when a sweep is asked of detections without scores.
    """
    settings.check()
    if settings.tolerance_voxels is None:
        if occupancy_map is None:
            raise InputError("give a match distance (tolerance_voxels) or an occupancy map")
        check_occupancy_map(occupancy_map, len(reference))
        rule = {"occupancy_map": occupancy_map}
        result = match_by_occupancy(detected, occupancy_map, reference)
        confusion = confusion_by_occupancy(detected, occupancy_map, reference)
    else:
        rule = {"tolerance_voxels": settings.tolerance_voxels}
        result = match_by_distance(detected, reference, settings.tolerance_voxels)
        confusion = confusion_by_distance(detected, reference, settings.tolerance_voxels)
    rows = precision_recall_f1(result, class_names)
    curves, best = None, {}
    if settings.sweep:
        thresholds = _sweep_thresholds(detected.score, settings.sweep)
        curves = threshold_sweep(detected, reference, thresholds, class_names=class_names, **rule)
        best = best_thresholds(curves, detected)
    return Evaluation(rows, format_confusion(*confusion, class_names or {}), curves, best)


def evaluate_files(
    detected_path: str | os.PathLike,
    reference_path: str | os.PathLike,
    settings: EvaluationSettings,
    *,
    occupancy_path: str | os.PathLike | None = None,
    voxel_size: float | None = None,
    tomograms: tables.Tomograms | None = None,
    class_names: Mapping[int, str] | None = None,
) -> Evaluation:
    """Read the particle tables (and occupancy map) and score them, see :func:`evaluate_particles`.

    Tables stating their pixel size are rescaled to ``voxel_size`` (Angstrom); two tables of
    different pixel sizes without it are refused. When each table holds one tomogram, it is the
    same one whatever their ids (e.g. a label map's file stem).
    """
    detected, reference = (
        tables.read_table(path, tomograms=tomograms, voxel_size=voxel_size)
        for path in (detected_path, reference_path)
    )
    if detected.voxel_size and reference.voxel_size and detected.voxel_size != reference.voxel_size:
        raise InputError(
            f"{detected_path} and {reference_path} have positions at {detected.voxel_size:g} and "
            f"{reference.voxel_size:g} A per pixel: give --voxel-size to compare them"
        )
    detected, reference = detected.particles, reference.particles
    if len(set(detected.tomo)) == 1 and len(set(reference.tomo)) == 1:
        detected = dataclasses.replace(detected, tomo=reference.tomo[0])
    if settings.tolerance_voxels is not None or occupancy_path is None:
        return evaluate_particles(detected, reference, settings, class_names=class_names)
    with about_file(occupancy_path):
        return evaluate_particles(detected, reference, settings, io.read_volume(occupancy_path), class_names)


def write_evaluation(
    evaluation: Evaluation,
    *,
    scores_csv: str | os.PathLike | None = None,
    sweep_csv: str | os.PathLike | None = None,
    thresholds_json: str | os.PathLike | None = None,
    class_names: Mapping[int, str] | None = None,
    source: str = "",
) -> None:
    """Write the figures: per-class scores, the sweep (CSV) and the thresholds of best F1 (JSON).

    ``thresholds_json`` is read by ``deepfinder cluster --thresholds-from``; ``source`` says in it
    which evaluation the thresholds come from. Files not given are not written.
    """
    if scores_csv:
        write_scores_csv(scores_csv, evaluation.rows)
    if evaluation.curves is None:
        if sweep_csv or thresholds_json:
            raise InputError("the sweep and the thresholds of best F1 need a sweep (sweep setting)")
        return
    if sweep_csv:
        write_sweep_csv(sweep_csv, evaluation.curves)
    if thresholds_json:
        write_thresholds(
            thresholds_json,
            {k: threshold for k, (threshold, _) in evaluation.best.items()},
            {k: f1 for k, (_, f1) in evaluation.best.items()},
            class_names,
            source=source,
        )


def _sweep_thresholds(scores: np.ndarray, sweep: int) -> np.ndarray:
    finite = scores[np.isfinite(scores)]
    if sweep == EVERY_SCORE:
        return np.unique(finite)
    if not len(finite):
        raise InputError("--sweep needs detections with scores")
    return np.quantile(finite, np.linspace(0, 1, sweep))
