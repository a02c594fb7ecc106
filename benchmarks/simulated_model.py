"""A model trained on simulated tomograms with the classes' shapes as targets.

The set-up shared by the benchmarks that need a trained model (``bench_learning.py``,
``roi_picks.py``, ``bench_threshold.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from deepfinder.core.io import read_volume, read_voxel_size, write_volume
from deepfinder.core.settings import TrainingSettings
from deepfinder.core.tables import csv as particle_csv
from deepfinder.core.targets import shape_targets
from deepfinder.core.train import train


def train_on_shapes(
    data: Path,
    names: Sequence[str],
    out: Path,
    settings: TrainingSettings,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> Path:
    """Train on tomograms ``names`` of a simulated dataset, each particle labelled with its class's shape.

    Parameters
    ----------
    data : Path
        Folder written by :func:`deepfinder.core.simulate.simulate_dataset`.
    names : sequence of str
        The tomograms to train on, e.g. ``["tomo_000", "tomo_001"]``; a fifth of their
        particles are held out for validation.
    out : Path
        Receives the label maps ``<name>_targets.mrc`` and the training run ``model/``.
    settings : TrainingSettings
    on_epoch_end : callable(epoch, row), optional
        Called after each epoch, as by :func:`deepfinder.core.train.train`; the epoch's weights
        are then ``out / "model" / f"checkpoint-{epoch:04d}.weights.h5"``.

    Returns
    -------
    Path
        The best weights.
    """
    classes = json.loads((data / "classes.json").read_text())
    masks = {c["id"]: np.asarray(read_volume(data / c["mask"])) > 0 for c in classes}
    tomograms, label_maps, tables = [], [], []
    for name in names:
        table = particle_csv.read(data / f"{name}_particles.csv").particles
        tomogram = data / f"{name}.mrc"
        labels = shape_targets(read_volume(tomogram).shape, table, masks)
        tomograms.append(tomogram)
        label_maps.append(write_volume(out / f"{name}_targets.mrc", labels, read_voxel_size(tomogram)))
        tables.append(table)
    return train(
        tomograms,
        label_maps,
        tables,
        out / "model",
        len(classes) + 1,
        settings,
        validation_fraction=0.2,
        class_names=["background"] + [c["name"] for c in classes],
        on_epoch_end=on_epoch_end,
    )
