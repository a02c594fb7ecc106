"""Scoring detected particles against a reference: precision, recall, F1.

Two matching rules:

- occupancy (SHREC'19): a detection is a true positive if it falls inside the
  occupancy of a reference particle of the same class; further detections on
  an already found particle are false positives;
- distance: detections and reference particles of the same class and
  tomogram are paired one-to-one within a tolerance, maximising the number of
  pairs, then minimising their total distance (Hungarian assignment).

Recall = found reference particles / reference particles; precision = true
positives / detections; F1 = 2PR / (P + R) = 2 TP / (detections + reference),
which is 0 when a class has detections but no reference or the reverse.
Precision without detections and recall without reference are NaN.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

from .errors import InputError
from .io import atomic_output
from .particles import ParticleTable


@dataclass
class MatchResult:
    """Outcome of matching detections to a reference.

    Attributes
    ----------
    detected_class, reference_class : int arrays
        Class of each detection / reference particle.
    detected_hit : (n_detected,) bool array
        True positive or not.
    detected_match : (n_detected,) int array
        Index of the matched reference particle, -1 for false positives.
    reference_found : (n_reference,) bool array
        Whether the reference particle was found.
    """

    detected_class: np.ndarray
    detected_hit: np.ndarray
    detected_match: np.ndarray
    reference_class: np.ndarray
    reference_found: np.ndarray


@dataclass
class ClassScores:
    """Precision, recall and F1 of one class (``class_id`` None: all classes together)."""

    class_id: int | None
    name: str
    n_detected: int
    n_reference: int
    true_positives: int
    precision: float
    recall: float
    f1: float


@dataclass
class SweepCurves:
    """Scores at each score threshold: ``table[i]`` is :func:`precision_recall_f1` at ``thresholds[i]``."""

    thresholds: np.ndarray
    table: list[list[ClassScores]]

    def curve(self, metric: str, class_id: int | None = None) -> np.ndarray:
        """One metric ('precision', 'recall', 'f1', ...) versus threshold, for a class or overall."""
        return np.array(
            [next(getattr(row, metric) for row in rows if row.class_id == class_id) for rows in self.table]
        )


def match_by_distance(
    detected: ParticleTable, reference: ParticleTable, tolerance_voxels: float
) -> MatchResult:
    """Pair detections with reference particles of the same class and tomogram, one-to-one.

    Parameters
    ----------
    detected, reference : ParticleTable
        Positions in voxels of the same tomograms (the ``tomo`` columns must agree).
    tolerance_voxels : float
        Largest centre distance of a pair, in voxels (for Angstrom, divide by the
        voxel size), typically about the particle radius.
    """
    if not tolerance_voxels > 0:
        raise InputError(f"tolerance_voxels must be > 0, got {tolerance_voxels}")
    if len(detected) and len(reference) and not np.intersect1d(detected.tomo, reference.tomo).size:
        raise InputError(
            f"Detections (tomograms {sorted(set(detected.tomo))[:3]}) and reference "
            f"(tomograms {sorted(set(reference.tomo))[:3]}) share no tomogram id: "
            f"give both tables the same ids in their tomo column"
        )
    match = np.full(len(detected), -1)
    for tomo in np.union1d(detected.tomo, reference.tomo):
        for class_id in np.union1d(detected.class_id, reference.class_id):
            det = np.flatnonzero((detected.tomo == tomo) & (detected.class_id == class_id))
            ref = np.flatnonzero((reference.tomo == tomo) & (reference.class_id == class_id))
            if len(det) and len(ref):
                pairs = _assign(detected.xyz[det], reference.xyz[ref], tolerance_voxels)
                match[det[pairs[:, 0]]] = ref[pairs[:, 1]]
    return _result(detected, reference, match)


def match_by_occupancy(
    detected: ParticleTable, occupancy_map: np.ndarray, reference: ParticleTable
) -> MatchResult:
    """SHREC'19 rule: a detection hits the particle whose occupancy holds its (rounded) position.

    Parameters
    ----------
    detected : ParticleTable
        Detections of one tomogram, positions in voxels of ``occupancy_map``.
    occupancy_map : (z, y, x) int array
        0 outside particles, ``i + 1`` inside reference particle ``i``.
    reference : ParticleTable
        The particles of that tomogram, in occupancy-id order (gives their classes).

    Notes
    -----
    A hit counts only for a detection of the particle's class. Detections are
    visited by decreasing score, so of several detections on one particle the
    best scored is the true positive and the others are false positives.
    """
    return _match_particles(detected, reference, particles_under(detected, occupancy_map, reference))


def _match_particles(detected: ParticleTable, reference: ParticleTable, particle: np.ndarray) -> MatchResult:
    """The matching of :func:`match_by_occupancy`, given the particle under each detection."""
    same_class = particle >= 0
    same_class[same_class] = reference.class_id[particle[same_class]] == detected.class_id[same_class]
    match = np.full(len(detected), -1)
    taken = np.zeros(len(reference), dtype=bool)
    for i in _by_decreasing_score(detected.score):
        if same_class[i] and not taken[particle[i]]:
            taken[particle[i]] = True
            match[i] = particle[i]
    return _result(detected, reference, match)


def confusion_by_occupancy(
    detected: ParticleTable, occupancy_map: np.ndarray, reference: ParticleTable
) -> tuple[np.ndarray, np.ndarray]:
    """Which reference class each detection lies on, counted per detected class.

    Shows the classes a network mixes up: a detection of class A inside the
    occupancy of a particle of class B counts in row A, column B; outside every
    particle, in column 0 (background). Arguments as :func:`match_by_occupancy`.

    Returns
    -------
    classes : int array
        The class ids of the rows and columns, background (0) first.
    counts : (n, n) int array
        ``counts[i, j]``: detections of ``classes[i]`` lying on a particle of
        ``classes[j]`` (row 0 stays empty: detections have a particle class).
    """
    particle = particles_under(detected, occupancy_map, reference)
    under = np.where(particle >= 0, reference.class_id[np.maximum(particle, 0)], 0)
    return _confusion(detected.class_id, under, reference.class_id)


def confusion_by_distance(
    detected: ParticleTable, reference: ParticleTable, tolerance_voxels: float
) -> tuple[np.ndarray, np.ndarray]:
    """Class of the nearest reference particle of each detection, counted per detected class.

    As :func:`confusion_by_occupancy`, for data without an occupancy map: a
    detection of class A counts in column B when the nearest reference particle
    of its tomogram, whatever its class, is a B within ``tolerance_voxels``;
    in column 0 (background) when none is that close.
    """
    if not tolerance_voxels > 0:
        raise InputError(f"tolerance_voxels must be > 0, got {tolerance_voxels}")
    under = np.zeros(len(detected), dtype=int)
    for tomo in np.intersect1d(detected.tomo, reference.tomo):
        det = np.flatnonzero(detected.tomo == tomo)
        ref = np.flatnonzero(reference.tomo == tomo)
        distance, nearest = cKDTree(reference.xyz[ref]).query(
            detected.xyz[det], distance_upper_bound=tolerance_voxels
        )
        near = np.isfinite(distance)
        under[det[near]] = reference.class_id[ref[nearest[near]]]
    return _confusion(detected.class_id, under, reference.class_id)


def _confusion(
    detected_class: np.ndarray, under_class: np.ndarray, reference_class: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    classes = np.union1d([0], np.union1d(detected_class, reference_class)).astype(int)
    counts = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(counts, (np.searchsorted(classes, detected_class), np.searchsorted(classes, under_class)), 1)
    return classes, counts


def format_confusion(
    classes: np.ndarray, counts: np.ndarray, class_names: Mapping[int, str] | None = None
) -> str:
    """Plain-text table of a class confusion (:func:`confusion_by_occupancy`,
    :func:`confusion_by_distance`): rows detected, columns lying on."""
    known = {0: "background", **(class_names or {})}
    names = [known.get(c, str(c)) for c in classes]
    width = max(8, *(len(name) for name in names))
    lines = ["detected \\ on".ljust(width) + "".join(name.rjust(width + 1) for name in names)]
    for name, row in zip(names[1:], counts[1:]):
        lines.append(name.ljust(width) + "".join(str(n).rjust(width + 1) for n in row))
    return "\n".join(lines)


def check_occupancy_map(occupancy_map: np.ndarray, n_reference: int) -> None:
    """Refuse a map that is not the occupancy of ``n_reference`` particles (ids 0..n_reference)."""
    if occupancy_map.ndim != 3:
        raise InputError(f"occupancy_map must be a 3D (z, y, x) array, got {occupancy_map.shape}")
    not_ids = occupancy_map < 0
    if not np.issubdtype(occupancy_map.dtype, np.integer):
        not_ids |= occupancy_map != np.rint(occupancy_map)
    if not_ids.any():
        raise InputError(
            f"the occupancy map holds {occupancy_map[not_ids][0]:g}, not a particle id: it must hold whole "
            "numbers, 0 outside the particles and i + 1 inside particle i of the reference (the simulator's "
            "<name>_occupancy.mrc, SHREC's occupancy_mask.mrc), not a tomogram or a score map"
        )
    if occupancy_map.size and occupancy_map.max() > n_reference:
        raise InputError(
            f"the occupancy map holds particle id {occupancy_map.max()} but the reference "
            f"has {n_reference} particles: ids must be 1..{n_reference}"
        )


def particles_under(
    detected: ParticleTable, occupancy_map: np.ndarray, reference: ParticleTable
) -> np.ndarray:
    """Index of the reference particle whose occupancy holds each detection, -1 if none.

    Arguments as :func:`match_by_occupancy`; refuses a map that is not the occupancy of
    ``reference`` (:func:`check_occupancy_map`) and detections of several tomograms.
    """
    occupancy_map = np.asarray(occupancy_map)
    check_occupancy_map(occupancy_map, len(reference))
    if len(np.unique(detected.tomo)) > 1:
        raise InputError(
            "Occupancy scores one tomogram: select its detections with ParticleTable.of_tomogram"
        )
    index = np.rint(detected.zyx).astype(int)
    inside = np.all((index >= 0) & (index < np.array(occupancy_map.shape)), axis=1)
    particle = np.full(len(detected), -1)
    particle[inside] = occupancy_map[tuple(index[inside].T)].astype(int) - 1
    return particle


def precision_recall_f1(
    result: MatchResult, class_names: Mapping[int, str] | None = None
) -> list[ClassScores]:
    """One row per class present in detections or reference, then the overall row (class_id None)."""
    class_names = dict(class_names or {})
    rows = []
    for class_id in np.union1d(result.detected_class, result.reference_class):
        is_det = result.detected_class == class_id
        is_ref = result.reference_class == class_id
        rows.append(
            _scores(
                int(class_id),
                class_names.get(int(class_id), f"class {class_id}"),
                int(is_det.sum()),
                int(is_ref.sum()),
                int(result.detected_hit[is_det].sum()),
                int(result.reference_found[is_ref].sum()),
            )
        )
    rows.append(
        _scores(
            None,
            "all",
            len(result.detected_class),
            len(result.reference_class),
            int(result.detected_hit.sum()),
            int(result.reference_found.sum()),
        )
    )
    return rows


def threshold_sweep(
    detected: ParticleTable,
    reference: ParticleTable,
    thresholds: Sequence[float],
    *,
    tolerance_voxels: float | None = None,
    occupancy_map: np.ndarray | None = None,
    class_names: Mapping[int, str] | None = None,
) -> SweepCurves:
    """Precision, recall and F1 keeping only detections with score >= each threshold.

    Give exactly one rule: ``tolerance_voxels`` (distance) or ``occupancy_map``.
    Every class of the full detection and reference sets has a row at every threshold.
    """
    if (tolerance_voxels is None) == (occupancy_map is None):
        raise InputError("Give exactly one matching rule: tolerance_voxels or occupancy_map")
    thresholds = np.sort(np.asarray(thresholds, dtype=float))
    classes = np.union1d(detected.class_id, reference.class_id)
    if occupancy_map is not None:
        # Looked up (and the map checked) once, not at every threshold.
        particle = particles_under(detected, occupancy_map, reference)
    table = []
    for threshold in thresholds:
        keep = detected.score >= threshold
        kept = detected.select(keep)
        if occupancy_map is None:
            result = match_by_distance(kept, reference, tolerance_voxels)
        else:
            result = _match_particles(kept, reference, particle[keep])
        rows = {row.class_id: row for row in precision_recall_f1(result, class_names)}
        table.append(
            [
                rows.get(int(k))
                or _scores(
                    int(k),
                    (class_names or {}).get(int(k), f"class {k}"),
                    0,
                    int((reference.class_id == k).sum()),
                    0,
                    0,
                )
                for k in classes
            ]
            + [rows[None]]
        )
    return SweepCurves(thresholds, table)


def format_table(rows: Sequence[ClassScores]) -> str:
    """Plain-text table: class, detections, reference, TP, precision, recall, F1."""
    width = max([len("class")] + [len(row.name) for row in rows])
    lines = [
        f"{'class':<{width}}  {'found':>6} {'ref':>6} {'TP':>6} {'precision':>9} {'recall':>7} {'F1':>6}"
    ]
    for row in rows:
        lines.append(
            f"{row.name:<{width}}  {row.n_detected:>6} {row.n_reference:>6} "
            f"{row.true_positives:>6} {_ratio(row.precision):>9} "
            f"{_ratio(row.recall):>7} {_ratio(row.f1):>6}"
        )
    return "\n".join(lines)


def write_scores_csv(path: str | os.PathLike, rows: Sequence[ClassScores]) -> Path:
    """Write score rows as CSV (class_id empty for the overall row)."""
    path = Path(path)
    with atomic_output(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(_CSV_COLUMNS)
        writer.writerows(_csv_cells(row) for row in rows)
    return path


def write_sweep_csv(path: str | os.PathLike, curves: SweepCurves) -> Path:
    """Write a threshold sweep as CSV: one line per threshold and class (overall: empty class_id)."""
    path = Path(path)
    with atomic_output(path) as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["threshold", *_CSV_COLUMNS])
        for threshold, rows in zip(curves.thresholds, curves.table):
            writer.writerows([f"{threshold:.6g}", *_csv_cells(row)] for row in rows)
    return path


#: The columns of a score row in the CSV files (read back by :func:`_scores_from_csv`).
_CSV_COLUMNS = [
    "class_id",
    "name",
    "n_detected",
    "n_reference",
    "true_positives",
    "precision",
    "recall",
    "f1",
]


def _csv_cells(row: ClassScores) -> list:
    """A score row's cells in the CSV files (figures rounded to 4 decimals)."""
    return [
        "" if row.class_id is None else row.class_id,
        row.name,
        row.n_detected,
        row.n_reference,
        row.true_positives,
        *(f"{ratio:.4f}" for ratio in (row.precision, row.recall, row.f1)),
    ]


def read_scores_csv(path: str | os.PathLike) -> list[ClassScores]:
    """Score rows written by :func:`write_scores_csv` (figures rounded to 4 decimals)."""
    with open(path, newline="") as handle:
        return [_scores_from_csv(row) for row in csv.DictReader(handle)]


def read_sweep_csv(path: str | os.PathLike) -> SweepCurves:
    """A threshold sweep written by :func:`write_sweep_csv`."""
    thresholds, table = [], []
    with open(path, newline="") as handle:
        for row in csv.DictReader(handle):
            if not thresholds or row["threshold"] != thresholds[-1]:
                thresholds.append(row["threshold"])
                table.append([])
            table[-1].append(_scores_from_csv(row))
    return SweepCurves(np.array(thresholds, dtype=float), table)


def _scores_from_csv(row: Mapping[str, str]) -> ClassScores:
    return ClassScores(
        class_id=int(row["class_id"]) if row["class_id"] else None,
        name=row["name"],
        n_detected=int(row["n_detected"]),
        n_reference=int(row["n_reference"]),
        true_positives=int(row["true_positives"]),
        **{metric: float(row[metric]) for metric in ("precision", "recall", "f1")},
    )


def _assign(detected_xyz: np.ndarray, reference_xyz: np.ndarray, tolerance: float) -> np.ndarray:
    """Most pairs within ``tolerance``, then least total distance; (k, 2) index pairs."""
    candidates = cKDTree(detected_xyz).sparse_distance_matrix(
        cKDTree(reference_xyz), tolerance, output_type="ndarray"
    )
    if len(candidates) == 0:
        return np.empty((0, 2), dtype=int)
    pairs_i, pairs_j, distance = candidates["i"], candidates["j"], candidates["v"]
    n_det, n_nodes = len(detected_xyz), len(detected_xyz) + len(reference_xyz)
    # Independent groups of mutually reachable candidates keep each assignment small.
    graph = coo_matrix((np.ones(len(pairs_i)), (pairs_i, n_det + pairs_j)), shape=(n_nodes, n_nodes))
    _, group = connected_components(graph, directed=False)
    pairs = []
    for g in np.unique(group[pairs_i]):
        rows = np.flatnonzero(group[:n_det] == g)
        cols = np.flatnonzero(group[n_det:] == g)
        # A forbidden pair costs more than any set of allowed ones: the most pairs win first.
        forbidden = tolerance * (min(len(rows), len(cols)) + 1)
        cost = np.full((len(rows), len(cols)), forbidden)
        in_group = group[pairs_i] == g
        cost[np.searchsorted(rows, pairs_i[in_group]), np.searchsorted(cols, pairs_j[in_group])] = distance[
            in_group
        ]
        r, c = linear_sum_assignment(cost)
        allowed = cost[r, c] < forbidden
        pairs.append(np.stack([rows[r[allowed]], cols[c[allowed]]], axis=1))
    return np.concatenate(pairs)


def _result(detected: ParticleTable, reference: ParticleTable, match: np.ndarray) -> MatchResult:
    found = np.zeros(len(reference), dtype=bool)
    found[match[match >= 0]] = True
    return MatchResult(
        detected_class=detected.class_id.copy(),
        detected_hit=match >= 0,
        detected_match=match,
        reference_class=reference.class_id.copy(),
        reference_found=found,
    )


def _by_decreasing_score(score: np.ndarray) -> np.ndarray:
    return np.argsort(-np.nan_to_num(score, nan=-np.inf), kind="stable")


def _scores(class_id, name, n_detected, n_reference, true_positives, found) -> ClassScores:
    precision = true_positives / n_detected if n_detected else np.nan
    recall = found / n_reference if n_reference else np.nan
    # 2PR / (P + R) written so that it is 0, not undefined, when one side is empty.
    f1 = 2 * true_positives / (n_detected + n_reference) if n_detected + n_reference else np.nan
    return ClassScores(class_id, name, n_detected, n_reference, true_positives, precision, recall, f1)


def _ratio(value: float) -> str:
    return "-" if np.isnan(value) else f"{value:.3f}"
