"""Score cut-offs of picks: given, from a reference, or from the scores themselves.

A pick is kept when its score is at least its class's threshold (the rule of
:func:`deepfinder.core.evaluate.threshold_sweep`); a pick whose score is NaN
(unknown) is kept. A threshold comes from one of three places:

- given by the user, per class;
- a reference: :func:`best_thresholds` of an evaluation's threshold sweep on an
  annotated tomogram, kept in a small JSON file (:func:`write_thresholds`,
  :func:`read_thresholds`) that the cluster step reads;
- no reference: :func:`fit_scores` splits the scores of one class into two
  populations (specks and fragments of low score, particles of high score).
  ``otsu``: the cut of largest between-group variance; ``gmm``: where the two
  posteriors of a two-component Gaussian mixture are equal. Either way the
  split is only made when two Gaussians describe the scores better than one
  (Bayesian information criterion), stand apart (Ashman's D of at least
  :data:`MIN_SEPARATION`) and each hold a few picks (:data:`MIN_SCORES_PER_SIDE`),
  and when the class has enough picks to tell (:data:`MIN_SCORES_TO_FIT`): a class
  whose picks are all alike, or a lone low pick, loses none. Cluster sizes (the
  score without score maps) are fitted on a log scale.
  benchmarks/RESULTS.md compares the two (:data:`DEFAULT_METHOD`): equal after the
  default minimum cluster size, Otsu better on a broad tail of specks.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .evaluate import SweepCurves
from .io import atomic_output
from .particles import ParticleTable

_log = logging.getLogger(__name__)

METHODS = ("otsu", "gmm")
DEFAULT_METHOD = "otsu"
#: Fewer scores than this in a class: no fit, nothing cut. With fewer, the low tail of the
#: true particles passes for a population of its own (the lamella demo's 15 picks per class
#: lost a quarter of its true rings and rods to it).
MIN_SCORES_TO_FIT = 30
#: Fewer scores than this on either side of the cut: no cut (a lone outlier is no population).
MIN_SCORES_PER_SIDE = 3
#: Ashman's D = sqrt(2) |mean1 - mean2| / sqrt(sigma1^2 + sigma2^2) below this: the two
#: Gaussians overlap into one population, and nothing is cut (2: a clean separation).
MIN_SEPARATION = 2.0
#: The ``kind`` field of a thresholds file.
THRESHOLDS_KIND = "deepfinder score thresholds"


@dataclass(frozen=True)
class ScoreFit:
    """A reference-free split of one class's scores.

    Attributes
    ----------
    method : str
        ``otsu`` or ``gmm``.
    threshold : float
        Keep scores >= this; ``-inf`` when the scores form one population (or
        are too few to tell), so that nothing is cut.
    log_scale : bool
        Whether the fit was made on ``log10(score)`` (cluster sizes).
    weights, means, sigmas : (2,) float arrays
        The two-component Gaussian mixture of the scores (in the fitted scale,
        low component first), drawn over the histogram in the picture.
    """

    method: str
    threshold: float
    log_scale: bool
    weights: np.ndarray
    means: np.ndarray
    sigmas: np.ndarray

    @property
    def separated(self) -> bool:
        """Whether the scores were split (a finite threshold)."""
        return bool(np.isfinite(self.threshold))

    def density(self, scale_values: np.ndarray) -> np.ndarray:
        """Weighted density of each component at ``scale_values`` (in the fitted scale), (2, n)."""
        x = np.asarray(scale_values, dtype=float)[None, :]
        mean, sigma, weight = self.means[:, None], self.sigmas[:, None], self.weights[:, None]
        return weight * np.exp(-0.5 * ((x - mean) / sigma) ** 2) / (sigma * np.sqrt(2 * np.pi))


def apply_thresholds(
    particles: ParticleTable, thresholds: Mapping[int, float]
) -> tuple[np.ndarray, dict[int, int]]:
    """Which picks pass their class's threshold, and how many each class loses.

    Parameters
    ----------
    particles : ParticleTable
    thresholds : {class: score}
        Keep picks with score >= the threshold of their class; classes not
        given, and picks of unknown (NaN) score, are kept.

    Returns
    -------
    keep : (n,) bool array
        Select the kept picks with ``particles.select(keep)``: their scores are unchanged.
    lost : {class: picks dropped}
        Every class of ``particles``, 0 for those that lost none.
    """
    keep = np.ones(len(particles), dtype=bool)
    for class_id, threshold in thresholds.items():
        keep &= ~((particles.class_id == int(class_id)) & (particles.score < float(threshold)))
    lost = {int(k): int(np.sum(~keep & (particles.class_id == k))) for k in np.unique(particles.class_id)}
    return keep, lost


def fit_scores(scores: np.ndarray, method: str = DEFAULT_METHOD, log_scale: bool = False) -> ScoreFit:
    """Split one class's scores into a low and a high population without a reference.

    Parameters
    ----------
    scores : (n,) float array
        Scores of the picks of one class; NaN are left out.
    method : {"otsu", "gmm"}
        Where to cut (see the module's description).
    log_scale : bool
        Fit ``log10(scores)``: for cluster sizes, which span orders of magnitude.

    Returns
    -------
    ScoreFit
        Threshold ``-inf`` when the scores are fewer than :data:`MIN_SCORES_TO_FIT`,
        one Gaussian describes them better than two, the two overlap or one side of
        the cut would hold fewer than :data:`MIN_SCORES_PER_SIDE` scores.
    """
    from sklearn.mixture import GaussianMixture

    if method not in METHODS:
        raise InputError(f"Unknown threshold method {method!r}: use one of {', '.join(METHODS)}")
    values = np.asarray(scores, dtype=float)
    values = values[np.isfinite(values)]
    if log_scale:
        if np.any(values <= 0):
            raise InputError("Scores fitted on a log scale (cluster sizes) must be > 0")
        values = np.log10(values)
    if len(values) < MIN_SCORES_TO_FIT or np.ptp(values) == 0:
        centre = float(np.mean(values)) if len(values) else 0.0
        spread = float(np.std(values)) or 1.0
        return ScoreFit(
            method, -np.inf, log_scale, np.array([0.0, 1.0]), np.array([centre, centre]), np.full(2, spread)
        )
    column = values[:, None]
    one = GaussianMixture(1).fit(column)
    two = GaussianMixture(2, n_init=3, random_state=0).fit(column)
    order = np.argsort(two.means_.ravel())
    weights = two.weights_[order]
    means = two.means_.ravel()[order]
    sigmas = np.sqrt(two.covariances_.ravel()[order])
    threshold = -np.inf
    separation = np.sqrt(2) * abs(means[1] - means[0]) / np.sqrt(np.sum(sigmas**2))
    if two.bic(column) < one.bic(column) and separation >= MIN_SEPARATION:
        cut = _posterior_cut(two, means) if method == "gmm" else _otsu_cut(values)
        below = np.sum(values < cut)
        if min(below, len(values) - below) >= MIN_SCORES_PER_SIDE:
            threshold = 10.0**cut if log_scale else cut
    return ScoreFit(method, float(threshold), log_scale, weights, means, sigmas)


def automatic_thresholds(
    particles: ParticleTable, method: str = DEFAULT_METHOD, log_scale: bool = False
) -> dict[int, ScoreFit]:
    """:func:`fit_scores` of each class of ``particles`` (``log_scale``: the scores are cluster sizes)."""
    return {
        int(k): fit_scores(particles.score[particles.class_id == k], method, log_scale)
        for k in np.unique(particles.class_id)
    }


def thresholds_of(fits: Mapping[int, ScoreFit]) -> dict[int, float]:
    """The thresholds of the classes whose scores were split."""
    return {k: fit.threshold for k, fit in fits.items() if fit.separated}


def best_thresholds(curves: SweepCurves, detected: ParticleTable) -> dict[int, tuple[float, float]]:
    """Per class, the score threshold of best F1 in a sweep, and that F1.

    The lowest sweep threshold reaching the class's best F1 keeps the same picks as
    any cut between the lowest score it keeps and the highest score it drops: the cut
    is put halfway, so that a threshold handed to other tomograms (or read back from a
    table of rounded scores) does not sit on a pick's score. ``-inf`` when the best
    F1 keeps every pick. Classes without reference particles (no F1) get none.

    Parameters
    ----------
    curves : SweepCurves
        :func:`deepfinder.core.evaluate.threshold_sweep` of ``detected``.
    detected : ParticleTable
        The detections swept.

    Returns
    -------
    {class: (threshold, f1)}
    """
    best = {}
    for column, row in enumerate(curves.table[0] if curves.table else []):
        if row.class_id is None:
            continue
        f1 = np.array([rows[column].f1 for rows in curves.table], dtype=float)
        if not np.any(f1 > 0):
            continue
        first = int(np.nanargmax(f1))
        scores = detected.score[detected.class_id == row.class_id]
        kept = scores >= curves.thresholds[first]
        dropped = scores[~kept & np.isfinite(scores)]
        threshold = (dropped.max() + scores[kept].min()) / 2 if len(dropped) and kept.any() else -np.inf
        best[row.class_id] = (float(threshold), float(f1[first]))
    return best


def write_thresholds(
    path: str | os.PathLike,
    thresholds: Mapping[int, float],
    f1: Mapping[int, float] | None = None,
    class_names: Mapping[int, str] | None = None,
    source: str = "",
) -> Path:
    """Write per-class thresholds as JSON, for ``deepfinder cluster --thresholds-from``.

    ``{"kind": ..., "source": ..., "classes": {"1": {"name": ..., "threshold": ..., "f1": ...}}}``;
    ``f1`` (the F1 the threshold reached) and names are optional; a threshold of ``-inf``
    (keep every pick) is written as null.
    """
    path = Path(path)
    classes = {}
    for class_id, threshold in sorted(thresholds.items()):
        entry = {"threshold": _finite_or_none(threshold)}
        if class_names and class_id in class_names:
            entry["name"] = class_names[class_id]
        if f1 and class_id in f1:
            entry["f1"] = round(float(f1[class_id]), 4)
        classes[str(int(class_id))] = entry
    with atomic_output(path) as temporary:
        temporary.write_text(
            json.dumps({"kind": THRESHOLDS_KIND, "source": source, "classes": classes}, indent=2) + "\n"
        )
    return path


def read_thresholds(path: str | os.PathLike) -> dict[int, float]:
    """``{class: threshold}`` of a file written by :func:`write_thresholds` (``-inf``: no cut)."""
    try:
        content = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{path}: not a thresholds file (JSON): {error}") from error
    if not isinstance(content, dict) or content.get("kind") != THRESHOLDS_KIND:
        raise InputError(
            f"{path}: not a thresholds file; write one with "
            "'deepfinder evaluate --sweep N --thresholds-output FILE'"
        )
    try:
        return {
            int(k): -np.inf if entry["threshold"] is None else float(entry["threshold"])
            for k, entry in content["classes"].items()
        }
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(f"{path}: a class lacks a numeric threshold ({error})") from error


def _posterior_cut(mixture, means: np.ndarray) -> float:
    """Lowest value between the two means where the high component is at least as likely."""
    grid = np.linspace(means[0], means[1], 1001)
    high = int(np.argmax(mixture.means_.ravel()))
    likelier = mixture.predict_proba(grid[:, None])[:, high] >= 0.5
    return float(grid[np.argmax(likelier)] if likelier.any() else means[1])


def _otsu_cut(values: np.ndarray) -> float:
    """Midpoint of the split of the sorted values with the largest between-group variance."""
    ordered = np.sort(values)
    n = len(ordered)
    below = np.arange(1, n)
    mean_low = np.cumsum(ordered)[:-1] / below
    mean_high = (ordered.sum() - np.cumsum(ordered)[:-1]) / (n - below)
    between = below * (n - below) * (mean_high - mean_low) ** 2
    # Only splits between distinct values are cuts.
    between[ordered[1:] == ordered[:-1]] = -1
    split = int(np.argmax(between))
    return float((ordered[split] + ordered[split + 1]) / 2)


@dataclass
class ThresholdReport:
    """What a cut did in one cluster run: every pick's score before it, the thresholds, the fits.

    Attributes
    ----------
    class_id, scores : (n,) arrays
        Class and score of every pick before the cut.
    thresholds : {class: score}
        The thresholds applied (``-inf``: none).
    lost : {class: picks dropped}
    fits : {class: ScoreFit}
        The reference-free fits, when automatic.
    log_scale : bool
        The scores are cluster sizes.
    source : str
        Where the thresholds came from (given, automatic, a file).
    """

    class_id: np.ndarray
    scores: np.ndarray
    thresholds: dict[int, float]
    lost: dict[int, int]
    fits: dict[int, ScoreFit]
    log_scale: bool
    source: str


def cut_by_score(
    particles: ParticleTable, thresholds: Mapping[int, float] | None, log_scale: bool, source: str
) -> tuple[np.ndarray, ThresholdReport]:
    """Apply given thresholds, or (``thresholds`` None) the automatic ones of ``particles``.

    ``log_scale``: the scores are cluster sizes. Returns the mask of the picks kept
    (:func:`apply_thresholds`) and the report of the cut (for :func:`write_threshold_report`).
    """
    fits = {}
    if thresholds is None:
        fits = automatic_thresholds(particles, log_scale=log_scale)
        thresholds = thresholds_of(fits)
    keep, lost = apply_thresholds(particles, thresholds)
    report = ThresholdReport(
        particles.class_id.copy(), particles.score.copy(), dict(thresholds), lost, fits, log_scale, source
    )
    return keep, report


def write_threshold_report(path: str | os.PathLike, report: ThresholdReport) -> Path:
    """Write a :class:`ThresholdReport` as JSON (read back by :func:`read_threshold_report`)."""
    path = Path(path)
    classes = {}
    for k in np.unique(report.class_id):
        k = int(k)
        entry = {
            "threshold": _finite_or_none(report.thresholds.get(k, -np.inf)),
            "lost": report.lost.get(k, 0),
            "scores": [_finite_or_none(s) for s in report.scores[report.class_id == k]],
        }
        fit = report.fits.get(k)
        if fit is not None:
            entry["fit"] = {
                "method": fit.method,
                "threshold": _finite_or_none(fit.threshold),
                "weights": fit.weights.tolist(),
                "means": fit.means.tolist(),
                "sigmas": fit.sigmas.tolist(),
            }
        classes[str(k)] = entry
    content = {"source": report.source, "log_scale": report.log_scale, "classes": classes}
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(content, indent=1) + "\n")
    return path


def read_threshold_report(path: str | os.PathLike) -> ThresholdReport:
    """The :class:`ThresholdReport` in a file written by :func:`write_threshold_report`."""
    content = json.loads(Path(path).read_text())
    log_scale = bool(content["log_scale"])
    class_id, scores, thresholds, lost, fits = [], [], {}, {}, {}
    for key, entry in content["classes"].items():
        k = int(key)
        values = [np.nan if s is None else s for s in entry["scores"]]
        class_id += [k] * len(values)
        scores += values
        thresholds[k] = -np.inf if entry["threshold"] is None else entry["threshold"]
        lost[k] = entry["lost"]
        if "fit" in entry:
            fit = entry["fit"]
            fits[k] = ScoreFit(
                fit["method"],
                -np.inf if fit["threshold"] is None else fit["threshold"],
                log_scale,
                *(np.array(fit[name], dtype=float) for name in ("weights", "means", "sigmas")),
            )
    return ThresholdReport(
        np.array(class_id, dtype=int),
        np.array(scores, dtype=float),
        thresholds,
        lost,
        fits,
        log_scale,
        content["source"],
    )


def _finite_or_none(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None
