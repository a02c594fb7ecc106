"""Score cut-offs on simulated data: per-class F1 with no threshold, the automatic
(reference-free) threshold, the threshold of a reference tomogram and the best one in hindsight.

Prepare (cached in ``--work``, skipped when done): simulate the demo preset (4 tomograms),
train a small model on tomo_000 + tomo_001 (the ``quick`` training preset, fewer
epochs), segment tomo_002 and tomo_003 with score maps. Measure: cluster each held-out
tomogram twice (the default minimum size, and none: every speck kept) with two scores (mean
class probability, cluster size), then per class and tomogram

- none: every pick;
- auto: the reference-free threshold of :func:`deepfinder.core.threshold.automatic_thresholds`,
  both methods (Otsu and Gaussian mixture);
- reference: the best-F1 threshold of the other held-out tomogram (what an evaluation on an
  annotated tomogram hands to the others);
- hindsight: the best F1 over every threshold, on the tomogram itself.

Usage: python benchmarks/bench_threshold.py [--work DIR] [--epochs N] [--figures DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
from simulated_model import train_on_shapes

from deepfinder.core.cluster import Clusters, find_clusters
from deepfinder.core.evaluate import match_by_distance, precision_recall_f1, threshold_sweep
from deepfinder.core.io import read_volume
from deepfinder.core.particles import ParticleTable
from deepfinder.core.segment import score_map_paths, segment_tomogram
from deepfinder.core.settings import training_preset
from deepfinder.core.simulate import simulate_dataset
from deepfinder.core.tables import csv as particle_csv
from deepfinder.core.threshold import (
    DEFAULT_METHOD,
    METHODS,
    apply_thresholds,
    automatic_thresholds,
    best_thresholds,
    thresholds_of,
)
from deepfinder.figures.pictures import HISTOGRAMS_SIZE, write_png
from deepfinder.figures.score_fits import plot_score_thresholds

TRAIN = ("tomo_000", "tomo_001")
TEST = ("tomo_002", "tomo_003")
#: Distance rule of the evaluation, about the particle radii of the demo preset.
TOLERANCE_VOXELS = 6


def prepare(work: Path, epochs: int) -> None:
    """Simulate, train, segment; each stage skipped when its output exists."""
    data = work / "data"
    if not (data / "classes.json").exists():
        started = time.perf_counter()
        simulate_dataset(data, preset="demo", n_tomograms=4, seed=0)
        print(f"simulated in {time.perf_counter() - started:.0f} s", flush=True)
    model = work / "model"
    best = model / "best.weights.h5"
    if not best.exists():
        started = time.perf_counter()
        best = train_on_shapes(data, TRAIN, work, training_preset("quick", epochs=epochs, seed=0))
        print(f"trained in {time.perf_counter() - started:.0f} s: {best}", flush=True)
    for name in TEST:
        labels = work / f"{name}_predicted.mrc"
        if not labels.exists():
            started = time.perf_counter()
            segment_tomogram(data / f"{name}.mrc", best, labels, work / f"{name}_scores.mrc")
            print(f"segmented {name} in {time.perf_counter() - started:.0f} s", flush=True)


def f1_per_class(found: ParticleTable, reference: ParticleTable) -> dict[int, float]:
    rows = precision_recall_f1(match_by_distance(found, reference, TOLERANCE_VOXELS))
    return {row.class_id: row.f1 for row in rows if row.class_id is not None}


def hindsight(found: ParticleTable, reference: ParticleTable) -> dict[int, tuple[float, float]]:
    """Best threshold and F1 per class over every threshold that changes the picks."""
    scores = np.unique(found.score[np.isfinite(found.score)])
    curves = threshold_sweep(found, reference, scores, tolerance_voxels=TOLERANCE_VOXELS)
    return best_thresholds(curves, found)


def cluster(work: Path, name: str, classes: list[dict], min_size: str, score: str) -> Clusters:
    labels = np.asarray(read_volume(work / f"{name}_predicted.mrc"))
    score_maps = None
    if score == "probability":
        paths = score_map_paths(work / f"{name}_scores.mrc", len(classes) + 1)
        score_maps = {k: np.asarray(read_volume(p)) for k, p in paths.items()}
    return find_clusters(
        labels,
        {c["id"]: c["radius_voxels"] for c in classes},
        {c["id"]: 0 for c in classes} if min_size == "none" else None,
        score_maps,
        tomo=name,
    )


def measure(work: Path, figures: Path | None) -> None:
    """Print one table per clustering (minimum size, score): per class and tomogram, F1 of each cut-off."""
    data = work / "data"
    classes = json.loads((data / "classes.json").read_text())
    names = {c["id"]: c["name"] for c in classes}
    references = {name: particle_csv.read(data / f"{name}_particles.csv").particles for name in TEST}
    for min_size in ("default", "none"):
        for score in ("probability", "size"):
            found = {name: cluster(work, name, classes, min_size, score).particles for name in TEST}
            best = {name: hindsight(found[name], references[name]) for name in TEST}
            print(f"\n### minimum cluster size: {min_size}; score: {score}\n")
            print(
                "| tomogram | class | picks / reference | none | auto otsu (lost) | auto gmm (lost) "
                "| other tomogram's best (lost) | hindsight (threshold) |"
            )
            print("|---|---|---|---|---|---|---|---|")
            for name, other in zip(TEST, TEST[::-1]):
                particles, reference = found[name], references[name]
                none = f1_per_class(particles, reference)
                cuts = {}
                for method in METHODS:
                    fits = automatic_thresholds(particles, method, log_scale=score == "size")
                    cuts[method] = thresholds_of(fits)
                    if figures and method == DEFAULT_METHOD:
                        figures.mkdir(parents=True, exist_ok=True)
                        write_png(
                            figures / f"{name}_{min_size}_{score}.png",
                            lambda figure, p=particles, f=fits, t=cuts[method], s=score: (
                                plot_score_thresholds(
                                    figure,
                                    p.class_id,
                                    p.score,
                                    ["background", *names.values()],
                                    t,
                                    f,
                                    s == "size",
                                )
                            ),
                            HISTOGRAMS_SIZE,
                        )
                cuts["reference"] = {k: t for k, (t, _) in best[other].items()}
                cells = {}
                for key, thresholds in cuts.items():
                    keep, lost = apply_thresholds(particles, thresholds)
                    f1 = f1_per_class(particles.select(keep), reference)
                    cells[key] = {k: f"{f1.get(k, 0):.2f} ({lost.get(k, 0)})" for k in names}
                for k, class_name in names.items():
                    n_picks = int(np.sum(particles.class_id == k))
                    n_reference = int(np.sum(reference.class_id == k))
                    threshold, f1 = best[name].get(k, (np.nan, np.nan))
                    print(
                        f"| {name} | {class_name} | {n_picks} / {n_reference} | {none.get(k, 0):.2f} "
                        f"| {cells['otsu'][k]} | {cells['gmm'][k]} | {cells['reference'][k]} "
                        f"| {f1:.2f} ({threshold:.3g}) |"
                    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_threshold"))
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--prepare-only", action="store_true")
    parser.add_argument("--figures", type=Path, default=None, help="write the score histograms here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args.work.mkdir(parents=True, exist_ok=True)
    prepare(args.work, args.epochs)
    if args.prepare_only:
        return
    measure(args.work, args.figures)


if __name__ == "__main__":
    main()
