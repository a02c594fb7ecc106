"""Pictures of DeepFinder results, drawn into a matplotlib Figure: no display, no Scipion.

Each ``plot_*`` function clears the :class:`~matplotlib.figure.Figure` it is
given and draws into it, so the same code fills a Tk window (redrawn when the
user refreshes) and the PNG files a headless run leaves in its extra folder.
Class ``k`` has the same colour in every picture, the annotation window's
(:func:`deepfinder.figures.orthoslices.default_colour`); all classes together
are drawn in black.

Positions are voxels; arrays are (z, y, x) and tables hold x, y, z.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Circle, Patch
from matplotlib.ticker import MaxNLocator

from ..core.evaluate import ClassScores, SweepCurves
from ..core.io import atomic_output
from ..core.particles import ParticleTable
from .orthoslices import VIEW_AXES, default_colour, orthoslice, to_grey

ALL_CLASSES_COLOUR = "black"
#: Opacity of the label-map colours over the tomogram.
LABEL_ALPHA = 0.4
#: Grey range shown of the tomogram, in standard deviations either side of the mean.
GREY_RANGE_STD = 3.0
#: Particles without a radius are marked when within this many voxels of the slice.
MARK_DISTANCE_VOXELS = 3.0
#: Extra figure width (inches) for the legend column of the orthoslice picture.
LEGEND_WIDTH_INCHES = 1.8
METRICS = ("precision", "recall", "f1")
#: Threshold curves with at most this many points mark them (a single point is no line).
FEW_THRESHOLDS = 20


def class_colour(class_id: int) -> str:
    """Colour of class ``class_id`` (1, 2, ...) in every picture."""
    return default_colour(class_id)


def save_png(figure: Figure, path: str | os.PathLike, dpi: int = 100) -> str:
    """Write ``figure`` as a PNG (folders created); returns the path."""
    with atomic_output(path) as temporary:
        figure.savefig(temporary, dpi=dpi, format="png")
    return str(path)


def _class_name(class_names: Sequence[str], class_id: int) -> str:
    return class_names[class_id] if class_id < len(class_names) else f"class {class_id}"


# --------------------------------------------------------------------------- training


def read_history(path: str | os.PathLike) -> list[dict]:
    """Rows of a training ``history.json`` (one per epoch); empty if the file is not there yet."""
    if not os.path.exists(path):
        return []
    with open(path) as handle:
        return json.load(handle)


def plot_training_history(figure: Figure, history: Sequence[Mapping], class_names: Sequence[str]) -> None:
    """Loss (training, validation) and per-class validation F1 per epoch.

    Parameters
    ----------
    figure : Figure
        Cleared, then given two axes: loss, and F1 (one line per particle class
        plus their mean in black; empty without validation).
    history : sequence of dict
        Rows of ``history.json``: epoch, train_loss and, with validation,
        val_loss, val_f1 (per class id, background first, None where undefined)
        and val_mean_f1.
    class_names : sequence of str
        Background first.
    """
    figure.clear()
    loss_axes, f1_axes = figure.subplots(1, 2)
    loss_axes.set(title="Loss", xlabel="epoch", ylabel="loss (lower is better)")
    f1_axes.set(
        title="Validation F1 per class",
        xlabel="epoch",
        ylabel="F1, voxel-wise (higher is better)",
        ylim=(0, 1.02),
    )
    if not history:
        for axes in (loss_axes, f1_axes):
            axes.text(
                0.5,
                0.5,
                "no epoch finished yet",
                ha="center",
                va="center",
                transform=axes.transAxes,
                color="grey",
            )
        figure.tight_layout()
        return
    epochs = np.array([row["epoch"] for row in history])
    validated = [row for row in history if "val_loss" in row]
    loss_axes.plot(
        epochs, [row["train_loss"] for row in history], "o-", color="black", markersize=3, label="training"
    )
    if validated:
        val_epochs = [row["epoch"] for row in validated]
        loss_axes.plot(
            val_epochs,
            [row["val_loss"] for row in validated],
            "s--",
            color="grey",
            markersize=3,
            label="validation",
        )
        for class_id in range(1, len(class_names)):
            f1 = [_none_to_nan(row["val_f1"], class_id) for row in validated]
            f1_axes.plot(
                val_epochs,
                f1,
                "o-",
                color=class_colour(class_id),
                markersize=3,
                label=_class_name(class_names, class_id),
            )
        f1_axes.plot(
            val_epochs,
            [row["val_mean_f1"] for row in validated],
            "--",
            color=ALL_CLASSES_COLOUR,
            linewidth=2,
            label="mean",
        )
        best = validated[int(np.argmax([row["val_mean_f1"] for row in validated]))]
    else:
        f1_axes.text(
            0.5,
            0.5,
            "no validation data",
            ha="center",
            va="center",
            transform=f1_axes.transAxes,
            color="grey",
        )
        best = history[int(np.argmin([row["train_loss"] for row in history]))]
    for axes in (loss_axes, f1_axes):
        axes.axvline(best["epoch"], color="grey", linestyle=":", label=f"best epoch {best['epoch']}")
        axes.legend(fontsize="small")
        axes.grid(alpha=0.3)
    figure.tight_layout()


def _none_to_nan(values: Sequence, index: int) -> float:
    value = values[index] if index < len(values) else None
    return np.nan if value is None else float(value)


# --------------------------------------------------------------------------- slices


def plot_orthoslices(
    figure: Figure,
    tomogram: np.ndarray,
    class_names: Sequence[str],
    labels: np.ndarray | None = None,
    particles: ParticleTable | None = None,
    radius_voxels: Mapping[int, float] | None = None,
    centre_xyz: Sequence[float] | None = None,
    lowpass_sigma: float = 1.0,
    label_binning: int = 1,
    title: str = "",
) -> tuple[int, int, int]:
    """Three orthoslices of a tomogram with its label map and particles in class colours.

    Laid out as ``XY | YZ`` over ``XZ`` at one scale, ``y`` and ``z`` pointing
    up (Scipion's convention), with a legend of the classes shown.

    Parameters
    ----------
    figure : Figure
        Cleared and resized to the tomogram's proportions.
    tomogram : (z, y, x) array
        Read only around the three slices (memory-mapped volumes are fine).
    class_names : sequence of str
        Background first.
    labels : (z, y, x) int array, optional
        Label map (0 background) of the tomogram, or of the tomogram binned
        ``label_binning`` times; drawn semi-transparent.
    particles : ParticleTable, optional
        Positions in voxels of ``tomogram``. A particle is drawn as the circle
        where its ball (``radius_voxels`` of its class) cuts the slice; without
        a radius, as a cross when within :data:`MARK_DISTANCE_VOXELS` of it.
    centre_xyz : (3,) voxels, optional
        Where the slices cross; default the particles' median position (so most
        particles are near the slices), else the tomogram's centre.
    lowpass_sigma : float
        Gaussian low-pass of the tomogram in voxels (0: none).
    label_binning : int
        Tomogram voxels per label-map voxel along each axis.
    title : str
        Figure title.

    Returns
    -------
    (x, y, z) int
        The slice indices shown.
    """
    if tomogram.ndim != 3:
        raise ValueError(f"tomogram must be a (z, y, x) volume, got shape {tomogram.shape}")
    if label_binning < 1:
        raise ValueError(f"label_binning must be 1 or more, got {label_binning}")
    shape_xyz = np.array(tomogram.shape[::-1])
    if labels is not None and np.any(
        np.abs(np.array(labels.shape[::-1]) * label_binning - shape_xyz) >= label_binning
    ):
        raise ValueError(
            f"labels of shape {labels.shape} (z, y, x) do not cover the tomogram "
            f"{tomogram.shape} at label_binning {label_binning}"
        )
    particles = particles if particles is not None else ParticleTable.empty()
    radius_voxels = radius_voxels or {}
    if centre_xyz is None:
        centre_xyz = np.median(particles.xyz, axis=0) if len(particles) else (shape_xyz - 1) / 2
    centre = np.clip(np.round(np.asarray(centre_xyz, dtype=float)), 0, shape_xyz - 1).astype(int)

    nx, ny, nz = shape_xyz
    figure.clear()
    height_inches = 7.0
    scale = height_inches / (ny + nz)
    figure.set_size_inches(max((nx + nz) * scale, 3.0) + LEGEND_WIDTH_INCHES, height_inches)
    grid = figure.add_gridspec(
        2, 3, width_ratios=[nx, nz, LEGEND_WIDTH_INCHES / scale], height_ratios=[ny, nz]
    )
    views = {
        "XY": figure.add_subplot(grid[0, 0]),
        "YZ": figure.add_subplot(grid[0, 1]),
        "XZ": figure.add_subplot(grid[1, 0]),
    }
    axis_names = "xyz"
    shown = set()
    for view, axes in views.items():
        u, v, w = VIEW_AXES[view]
        grey = to_grey(orthoslice(tomogram, view, centre[w], lowpass_sigma), GREY_RANGE_STD)
        extent = (-0.5, shape_xyz[u] - 0.5, -0.5, shape_xyz[v] - 0.5)
        axes.imshow(
            grey, cmap="gray", origin="lower", extent=extent, interpolation="nearest", vmin=0, vmax=255
        )
        if labels is not None:
            section = orthoslice(labels, view, centre[w] // label_binning).astype(int)
            label_extent = (
                -0.5,
                section.shape[1] * label_binning - 0.5,
                -0.5,
                section.shape[0] * label_binning - 0.5,
            )
            axes.imshow(_label_rgba(section), origin="lower", extent=label_extent, interpolation="nearest")
            shown.update(int(k) for k in np.unique(section) if k > 0)
        shown.update(_draw_particles(axes, particles, radius_voxels, u, v, w, centre[w]))
        axes.set_xlim(extent[:2])
        axes.set_ylim(extent[2:])
        axes.set_title(f"{view}, {axis_names[w]} = {centre[w]}", fontsize="medium")
        axes.set_xlabel(f"{axis_names[u]} (voxels)")
        axes.set_ylabel(f"{axis_names[v]} (voxels)")
    legend_axes = figure.add_subplot(grid[:, 2])
    legend_axes.axis("off")
    handles = [
        Patch(facecolor=class_colour(k), edgecolor=class_colour(k), label=_class_name(class_names, k))
        for k in sorted(shown)
    ]
    if handles:
        legend_axes.legend(handles=handles, loc="upper left", title="classes", frameon=False)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    return tuple(int(c) for c in centre)


def _label_rgba(section: np.ndarray) -> np.ndarray:
    """RGBA image of a label slice: class colours at :data:`LABEL_ALPHA`, background clear."""
    rgba = np.zeros(section.shape + (4,))
    for k in np.unique(section):
        if k > 0:
            rgba[section == k] = to_rgba(class_colour(int(k)), LABEL_ALPHA)
    return rgba


def _draw_particles(
    axes,
    particles: ParticleTable,
    radius_voxels: Mapping[int, float],
    u: int,
    v: int,
    w: int,
    slice_index: int,
) -> set[int]:
    """Mark the particles cut by the slice ``slice_index`` along axis ``w``; returns their classes."""
    shown = set()
    for class_id in np.unique(particles.class_id):
        xyz = particles.xyz[particles.class_id == class_id]
        offset = np.abs(xyz[:, w] - slice_index)
        colour = class_colour(int(class_id))
        radius = radius_voxels.get(int(class_id))
        if radius:
            cut = offset < radius
            for point, section in zip(xyz[cut], np.sqrt(radius**2 - offset[cut] ** 2)):
                axes.add_patch(
                    Circle((point[u], point[v]), section, fill=False, edgecolor=colour, linewidth=1.2)
                )
        else:
            cut = offset <= MARK_DISTANCE_VOXELS
            axes.plot(xyz[cut, u], xyz[cut, v], "+", color=colour, markersize=8, markeredgewidth=1.5)
        if cut.any():
            shown.add(int(class_id))
    return shown


# --------------------------------------------------------------------------- clusters


def plot_cluster_histograms(
    figure: Figure,
    class_id: np.ndarray,
    class_names: Sequence[str],
    sizes_voxels: np.ndarray | None = None,
    scores: np.ndarray | None = None,
    bins: int = 30,
) -> None:
    """Per-class histograms of cluster size and score, to choose thresholds.

    Parameters
    ----------
    figure : Figure
        Cleared, then given one axes per quantity given (size, score), one
        step histogram per class in it.
    class_id : (n,) int array
        Class of each particle.
    class_names : sequence of str
        Background first.
    sizes_voxels : (n,) array, optional
        Voxels in each particle's cluster; drawn on a logarithmic axis since
        classes differ in volume by orders of magnitude.
    scores : (n,) array, optional
        Score of each particle (mean class probability, 0-1); NaN are left out.
    bins : int
        Bins per histogram.
    """
    class_id = np.asarray(class_id, dtype=int)
    quantities = [
        (name, np.asarray(values, dtype=float))
        for name, values in (("size", sizes_voxels), ("score", scores))
        if values is not None
    ]
    if not quantities:
        raise ValueError("Give sizes_voxels, scores or both: there is nothing to plot.")
    for name, values in quantities:
        if values.shape != class_id.shape:
            raise ValueError(
                f"{name} has {values.shape} values for {class_id.shape} class ids: give one per particle"
            )
    figure.clear()
    all_axes = np.atleast_1d(figure.subplots(1, len(quantities)))
    classes = np.unique(class_id)
    for axes, (name, values) in zip(all_axes, quantities):
        finite = np.isfinite(values)
        if name == "size":
            positive = values[finite & (values > 0)]
            low, high = (positive.min(), positive.max()) if len(positive) else (1.0, 10.0)
            # At least a factor 4 wide, so a log axis has readable ticks even for equal sizes.
            widen = np.sqrt(max(4.0 * low / high, 1.0))
            edges = np.geomspace(low / widen, high * widen * 1.01, bins + 1)
            axes.set_xscale("log")
            axes.set(title="Cluster size", xlabel="size (voxels)")
        else:
            edges = np.linspace(0.0, 1.0, bins + 1)
            axes.set(title="Particle score", xlabel="score (mean class probability)")
        for k in classes:
            chosen = values[(class_id == k) & finite]
            axes.hist(
                chosen,
                bins=edges,
                histtype="step",
                linewidth=1.5,
                color=class_colour(int(k)),
                label=f"{_class_name(class_names, int(k))} ({len(chosen)})",
            )
        axes.set_ylabel("particles")
        axes.yaxis.set_major_locator(MaxNLocator(integer=True))
        if len(classes):
            axes.legend(fontsize="small", title="class (particles)")
        else:
            axes.text(
                0.5, 0.5, "no particles", ha="center", va="center", transform=axes.transAxes, color="grey"
            )
        axes.grid(alpha=0.3)
    figure.tight_layout()


# --------------------------------------------------------------------------- evaluation


def plot_evaluation(figure: Figure, scores: Sequence[ClassScores], sweep: SweepCurves | None = None) -> None:
    """Per-class precision, recall, F1 as a table, and the same against the score threshold.

    Parameters
    ----------
    figure : Figure
        Cleared, then given a table axes and, with ``sweep``, one axes per
        metric with a line per class and one for all classes (black).
    scores : sequence of ClassScores
        Rows of :func:`deepfinder.core.evaluate.precision_recall_f1` (the
        overall row has ``class_id`` None).
    sweep : SweepCurves, optional
        From :func:`deepfinder.core.evaluate.threshold_sweep`.
    """
    figure.clear()
    if sweep is not None and len(sweep.thresholds):
        grid = figure.add_gridspec(2, 3, height_ratios=[0.3 + 0.1 * len(scores), 1.6])
        table_axes = figure.add_subplot(grid[0, :])
        metric_axes = [figure.add_subplot(grid[1, i]) for i in range(3)]
    else:
        table_axes, metric_axes = figure.add_subplot(1, 1, 1), []
    table_axes.axis("off")
    cells = [
        [
            row.name,
            row.n_detected,
            row.n_reference,
            row.true_positives,
            *(_ratio(getattr(row, metric)) for metric in METRICS),
        ]
        for row in scores
    ]
    if cells:
        table = table_axes.table(
            cellText=cells,
            colLabels=["class", "picked", "reference", "TP", "precision", "recall", "F1"],
            loc="center",
            cellLoc="center",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(9)
        table.scale(1.0, 1.3)
        for i, row in enumerate(scores, start=1):
            colour = ALL_CLASSES_COLOUR if row.class_id is None else class_colour(row.class_id)
            table[i, 0].get_text().set_color(colour)
            table[i, 0].get_text().set_fontweight("bold")
    table_axes.set_title("Picked vs reference particles")
    for axes, metric in zip(metric_axes, METRICS):
        for row in sweep.table[0]:
            is_all = row.class_id is None
            axes.plot(
                sweep.thresholds,
                sweep.curve(metric, row.class_id),
                drawstyle="steps-post",
                color=ALL_CLASSES_COLOUR if is_all else class_colour(row.class_id),
                linestyle="--" if is_all else "-",
                linewidth=2 if is_all else 1.5,
                marker="o" if len(sweep.thresholds) <= FEW_THRESHOLDS else None,
                markersize=4,
                label=row.name,
            )
        label = "F1" if metric == "f1" else metric
        axes.set(
            title=f"{label} vs threshold",
            xlabel="score threshold (picks kept: score ≥ it)",
            ylabel=label,
            ylim=(0, 1.02),
        )
        axes.grid(alpha=0.3)
    if metric_axes:
        metric_axes[-1].legend(fontsize="small")
    figure.tight_layout()


def _ratio(value: float) -> str:
    return "-" if not np.isfinite(value) else f"{value:.3f}"
