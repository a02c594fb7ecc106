"""Learning the tiny preset end to end, epoch by epoch: simulate -> shape targets -> train ->
segment a held-out tomogram -> cluster -> per-class F1.

Trains on tomo_000 + tomo_001 of ``simulate_dataset(preset="tiny", n_tomograms=3)`` with a
training preset (default ``quick``, the demo's), then after every epoch segments tomo_002 with
that epoch's weights and prints each class's F1 (distance rule, 6 voxels) beside the training CPU
time spent so far. It answers "how many steps does this preset need on this machine", and fails
(exit 1) when a class stays below ``--min-f1`` with the best weights: a change that breaks the
interplay of targets, normalisation, loss, tiling and clustering shows here first. The Scipion
pipeline test (``test_protocols_pipeline.py``) checks the same bar through the protocols.

Usage: python benchmarks/bench_learning.py [--work DIR] [--preset quick] [--seed 0] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
from simulated_model import train_on_shapes

from deepfinder.core.cluster import cluster_labels
from deepfinder.core.evaluate import format_table, match_by_distance, precision_recall_f1
from deepfinder.core.io import read_volume
from deepfinder.core.segment import segment_tomogram
from deepfinder.core.settings import TRAINING_PRESETS, training_preset
from deepfinder.core.simulate import simulate_dataset
from deepfinder.core.tables import csv as particle_csv

log = logging.getLogger("bench_learning")

TRAIN, TEST = ["tomo_000", "tomo_001"], "tomo_002"
# About the particle radii (5 to 8 voxels).
TOLERANCE_VOXELS = 6


def held_out_scores(data: Path, weights: Path, out: Path) -> list:
    """Per-class rows (precision, recall, F1) of ``weights`` on the held-out tomogram."""
    classes = json.loads((data / "classes.json").read_text())
    segment_tomogram(data / f"{TEST}.mrc", weights, out / "predicted.mrc")
    radius = {c["id"]: c["radius_voxels"] for c in classes}
    found = cluster_labels(np.asarray(read_volume(out / "predicted.mrc")), radius, tomo=TEST)
    reference = particle_csv.read(data / f"{TEST}_particles.csv").particles
    result = match_by_distance(found, reference, tolerance_voxels=TOLERANCE_VOXELS)
    return precision_recall_f1(result, {c["id"]: c["name"] for c in classes})


def class_f1(rows: list) -> dict[str, float]:
    return {row.name: round(row.f1, 3) for row in rows if row.class_id is not None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("bench_learning_work"))
    parser.add_argument("--preset", default="quick", choices=list(TRAINING_PRESETS))
    parser.add_argument("--seed", type=int, default=0, help="training seed (the data's is 0)")
    parser.add_argument("--epochs", type=int, help="instead of the preset's")
    parser.add_argument("--min-f1", type=float, default=0.9)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    data = args.work / "data"
    if not (data / "classes.json").exists():
        simulate_dataset(data, preset="tiny", n_tomograms=3, seed=0)
    out = args.work / f"{args.preset}_seed{args.seed}"
    out.mkdir(parents=True, exist_ok=True)
    changes = {"seed": args.seed} | ({"epochs": args.epochs} if args.epochs else {})
    settings = training_preset(args.preset, **changes)

    start = time.process_time()
    scoring = 0.0

    def score_epoch(epoch: int, row: dict) -> None:
        nonlocal scoring
        began = time.process_time()
        training = began - start - scoring
        weights = out / "model" / f"checkpoint-{epoch:04d}.weights.h5"
        f1 = class_f1(held_out_scores(data, weights, out))
        scoring += time.process_time() - began
        log.info(
            "epoch %d: training %.0f CPU-s, val mean voxel F1 %.2f, held-out F1 %s",
            epoch,
            training,
            row.get("val_mean_f1", float("nan")),
            f1,
        )

    best = train_on_shapes(data, TRAIN, out, settings, on_epoch_end=score_epoch)
    rows = held_out_scores(data, best, out)
    print(f"best weights ({best.name}), {TEST}:\n{format_table(rows)}")
    worst = min(class_f1(rows).values())
    return 0 if worst >= args.min_f1 else 1


if __name__ == "__main__":
    sys.exit(main())
