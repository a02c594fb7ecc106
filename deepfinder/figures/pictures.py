"""Pictures of result files: what the viewers' windows show and the PNGs runs leave behind.

Each ``*_page`` function returns a drawing function ``draw(figure)`` that reads
the files when called, so a window redrawing it shows files still being
written (a training history grows every epoch). :func:`write_png` draws one
into a PNG without any display. No Scipion here: paths, tables and names in.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from ..core import io
from ..core.evaluate import read_scores_csv, read_sweep_csv
from ..core.particles import ParticleTable
from ..core.tables import csv as particle_csv
from .plots import (
    plot_cluster_histograms,
    plot_evaluation,
    plot_orthoslices,
    plot_training_history,
    read_history,
    save_png,
)

Draw = Callable[[Figure], object]

#: Figure size (inches) of the pictures that do not size themselves.
TRAINING_SIZE = (11.0, 4.5)
HISTOGRAMS_SIZE = (11.0, 4.5)
EVALUATION_SIZE = (12.0, 7.0)


def write_png(path: str | os.PathLike, draw: Draw, size_inches: tuple[float, float] = TRAINING_SIZE) -> str:
    """Draw ``draw`` into a new figure of ``size_inches`` and save it as a PNG at ``path``."""
    figure = Figure(figsize=size_inches)
    draw(figure)
    return save_png(figure, path)


def training_page(history_path: str | os.PathLike, class_names: Sequence[str]) -> Draw:
    """Learning curves of a training ``history.json`` (absent: no epoch finished yet)."""
    return lambda figure: plot_training_history(figure, read_history(history_path), class_names)


def slices_page(
    tomogram_path: str | os.PathLike,
    class_names: Sequence[str],
    labels_path: str | os.PathLike | None = None,
    particles: ParticleTable | None = None,
    radius_voxels: Mapping[int, float] | None = None,
    title: str = "",
) -> Draw:
    """Orthoslices of a tomogram with its label map (MRC, possibly binned) and particles.

    Particles are in voxels of the tomogram; ``radius_voxels`` per class too.
    The label map's binning is its size relative to the tomogram's.
    """

    def draw(figure: Figure):
        tomogram = io.read_volume(tomogram_path)
        labels = io.read_volume(labels_path) if labels_path else None
        binning = max(1, round(tomogram.shape[2] / labels.shape[2])) if labels is not None else 1
        return plot_orthoslices(
            figure,
            tomogram,
            class_names,
            labels=labels,
            particles=particles,
            radius_voxels=radius_voxels,
            label_binning=binning,
            title=title,
        )

    return draw


def cluster_sizes_path(particles_path: str | os.PathLike) -> str:
    """Where the cluster sizes of a particles CSV are kept: one integer per line, same order."""
    return os.fspath(particles_path).removesuffix(".csv") + "_sizes.txt"


def clusters_page(
    particles_paths: Sequence[str | os.PathLike], class_names: Sequence[str], score_is_probability: bool
) -> Draw:
    """Histograms of cluster size and score per class, over several particle CSV files.

    Sizes come from each file's :func:`cluster_sizes_path` when all are there.
    ``score_is_probability`` False: the scores are cluster sizes (no score
    maps), so they are drawn as sizes.
    """

    def draw(figure: Figure):
        tables = [particle_csv.read(path).particles for path in particles_paths]
        particles = ParticleTable.concat(tables) if tables else ParticleTable.empty()
        size_files = [cluster_sizes_path(path) for path in particles_paths]
        if all(os.path.exists(path) for path in size_files):
            sizes = np.concatenate([_read_sizes(path) for path in size_files] or [np.empty(0)])
        else:
            sizes = None if score_is_probability else particles.score
        plot_cluster_histograms(
            figure,
            particles.class_id,
            class_names,
            sizes_voxels=sizes,
            scores=particles.score if score_is_probability else None,
        )

    return draw


def _read_sizes(path: str) -> np.ndarray:
    # An empty file (no particles) makes loadtxt warn.
    return np.loadtxt(path, ndmin=1) if os.path.getsize(path) else np.empty(0)


def evaluation_page(scores_csv: str | os.PathLike, sweep_csv: str | os.PathLike | None = None) -> Draw:
    """Table of per-class precision, recall, F1 and, if the sweep file exists, curves against threshold."""

    def draw(figure: Figure):
        sweep = read_sweep_csv(sweep_csv) if sweep_csv and os.path.exists(sweep_csv) else None
        plot_evaluation(figure, read_scores_csv(scores_csv), sweep)

    return draw
