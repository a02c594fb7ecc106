"""The score histogram of each class with its threshold and, when automatic, the fitted mixture."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ..core.threshold import ScoreFit, read_threshold_report
from .plots import class_colour

#: Panels per row.
COLUMNS = 4
BINS = 30


def plot_score_thresholds(
    figure: Figure,
    class_id: np.ndarray,
    scores: np.ndarray,
    class_names: Sequence[str],
    thresholds: Mapping[int, float],
    fits: Mapping[int, ScoreFit] | None = None,
    log_scale: bool = False,
) -> None:
    """One panel per class: histogram of the picks' scores, the threshold, the fit.

    Parameters
    ----------
    figure : Figure
        Cleared, then given one axes per class of ``class_id``.
    class_id, scores : (n,) arrays
        Class and score of every pick before the cut; NaN scores are left out.
    class_names : sequence of str
        Background first.
    thresholds : {class: score}
        The cut applied (a dashed line); classes not given were not cut.
    fits : {class: ScoreFit}, optional
        Reference-free fits: the two Gaussian components of those that split the scores are
        drawn (dotted: the low one), scaled to the histogram.
    log_scale : bool
        The scores are cluster sizes: logarithmic bins and axis.
    """
    class_id = np.asarray(class_id, dtype=int)
    scores = np.asarray(scores, dtype=float)
    figure.clear()
    classes = np.unique(class_id)
    if not len(classes):
        axes = figure.subplots()
        axes.text(0.5, 0.5, "no picks", ha="center", va="center", transform=axes.transAxes, color="grey")
        axes.set_axis_off()
        return
    rows = -(-len(classes) // COLUMNS)
    all_axes = np.atleast_1d(figure.subplots(rows, min(len(classes), COLUMNS), squeeze=False)).ravel()
    for axes in all_axes[len(classes) :]:
        axes.set_axis_off()
    for axes, k in zip(all_axes, classes):
        values = scores[(class_id == k) & np.isfinite(scores)]
        edges = _edges(values, log_scale)
        colour = class_colour(int(k))
        axes.hist(values, bins=edges, color=colour, alpha=0.5)
        fit = (fits or {}).get(int(k))
        if fit is not None and fit.separated:
            # Counts per bin of each component: n x density x bin width (in the fitted scale).
            scale_edges = np.log10(edges) if fit.log_scale else edges
            x = np.linspace(scale_edges[0], scale_edges[-1], 200)
            expected = fit.density(x) * len(values) * np.diff(scale_edges).mean()
            shown = 10**x if fit.log_scale else x
            for component, style in zip(expected, (":", "-")):
                axes.plot(shown, component, style, color="black", linewidth=1)
        threshold = thresholds.get(int(k))
        lost = int(np.sum(values < threshold)) if threshold is not None else 0
        if threshold is not None and np.isfinite(threshold):
            axes.axvline(threshold, color="black", linestyle="--", linewidth=1.5)
        name = class_names[k] if k < len(class_names) else f"class {k}"
        cut = f">= {threshold:.3g}" if threshold is not None and np.isfinite(threshold) else "no cut"
        axes.set_title(f"{name}: {cut}, lost {lost} of {len(values)}", fontsize="medium")
        if log_scale:
            axes.set_xscale("log")
        axes.set_xlabel("cluster size (voxels)" if log_scale else "score (mean class probability)")
        axes.set_ylabel("picks")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        axes.grid(alpha=0.3)
    figure.tight_layout()


def _edges(values: np.ndarray, log_scale: bool) -> np.ndarray:
    if log_scale:
        positive = values[values > 0]
        low, high = (positive.min(), positive.max()) if len(positive) else (1.0, 10.0)
        return np.geomspace(low / 1.2, high * 1.2, BINS + 1)
    if not len(values):
        return np.linspace(0.0, 1.0, BINS + 1)
    # The data's range, widened by a tenth: scores of a class often crowd near one end of 0-1.
    margin = max(np.ptp(values), 0.01) / 10
    return np.linspace(values.min() - margin, values.max() + margin, BINS + 1)


def threshold_page(report_path: str | os.PathLike, class_names: Sequence[str]) -> Callable[[Figure], None]:
    """:func:`plot_score_thresholds` of a cluster run's threshold report (``--threshold-report``)."""

    def draw(figure: Figure) -> None:
        report = read_threshold_report(report_path)
        plot_score_thresholds(
            figure,
            report.class_id,
            report.scores,
            class_names,
            report.thresholds,
            report.fits,
            report.log_scale,
        )

    return draw
