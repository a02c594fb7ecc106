"""Review and retrain: do 20 reviewed picks lower a class's false positives on a held-out tomogram?

On the simulator's tiny preset (tomo_000 to tomo_003, seed 0):

1. a base model is trained briefly on tomo_000 (sphere targets), so that it
   still makes mistakes;
2. it picks tomo_001 (the tomogram to review) and tomo_003 (held out);
3. the class with the most false positives in tomo_001 is reviewed: its 20
   lowest-score picks in the order of :class:`deepfinder.core.annotation.Review`,
   each moved onto the true particle within the tolerance (and re-classed when
   that particle is of another class), rejected when there is none (a perfect
   reviewer, standing in for the person at the review window);
4. the base model is fine-tuned (started from its weights) on tomo_000 and on
   tomo_001's picks as the review left them; a control run fine-tunes the same
   way on tomo_001's picks as picked, without the review;
5. both pick tomo_003: false positives of the reviewed class and per-class F1.

Usage: python benchmarks/bench_review_loop.py [--out DIR] [--base-epochs N] [--tune-epochs N] [--steps N]
    [--tune-seed N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from deepfinder.core.annotation import Review
from deepfinder.core.cluster import cluster_labels
from deepfinder.core.evaluate import match_by_distance, precision_recall_f1
from deepfinder.core.io import read_particles_csv, read_volume, write_volume
from deepfinder.core.particles import ParticleTable
from deepfinder.core.segment import segment_tomogram
from deepfinder.core.settings import training_preset
from deepfinder.core.simulate import simulate_dataset
from deepfinder.core.targets import sphere_targets
from deepfinder.core.train import train

TRAINING = training_preset("quick", epochs=15, seed=0)
TOLERANCE_VOXELS = 6
N_REVIEWED = 20


def picks(tomogram: dict, weights: Path, folder: Path, radius: dict) -> ParticleTable:
    labels = folder / f"{tomogram['name']}_labels.mrc"
    segment_tomogram(tomogram["tomogram"], weights, labels)
    return cluster_labels(np.asarray(read_volume(labels)), radius, tomo=tomogram["name"])


def review_by_truth(found: ParticleTable, truth: ParticleTable, class_id: int, n: int) -> Review:
    """The ``n`` lowest-score picks of ``class_id`` reviewed against the true particles."""
    review = Review(found)
    of_class = [int(i) for i in review.order if found.class_id[i] == class_id][:n]
    for index in of_class:
        distance = np.linalg.norm(truth.xyz - found.xyz[index], axis=1)
        nearest = int(np.argmin(distance))
        if distance[nearest] > TOLERANCE_VOXELS:
            review.reject(index)
        else:
            # As at the window: dragged onto the particle, its class typed if another.
            review.move(index, truth.xyz[nearest])
            review.set_class(index, int(truth.class_id[nearest]))
    return review


def kept_after_review(review: Review) -> ParticleTable:
    """The picks as the review leaves them: rejected ones out, corrections in, the rest as picked."""
    kept = review.status != "rejected"
    return ParticleTable(tomo=review.picks.tomo[kept], class_id=review.class_id[kept], xyz=review.xyz[kept])


def scores(found: ParticleTable, truth: ParticleTable, names: dict) -> dict:
    result = match_by_distance(found, truth, tolerance_voxels=TOLERANCE_VOXELS)
    rows = precision_recall_f1(result, names)
    return {row.name: row for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--base-epochs", type=int, default=15)
    parser.add_argument("--tune-epochs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=16, help="training steps per epoch")
    parser.add_argument("--tune-seed", type=int, default=1, help="seed of the fine-tuning runs")
    args = parser.parse_args()
    folder = args.out or Path(tempfile.mkdtemp(prefix="bench_review_loop_"))
    started = time.perf_counter()
    dataset = simulate_dataset(folder / "data", preset="tiny", n_tomograms=4, seed=0)
    classes = json.loads((folder / "data" / "classes.json").read_text())
    radius = {c["id"]: c["radius_voxels"] for c in classes}
    names = {c["id"]: c["name"] for c in classes}
    n_classes = len(classes) + 1
    train_tomo, review_tomo, _, held_out = dataset["tomograms"]
    truth = {t["name"]: read_particles_csv(t["particles"]) for t in dataset["tomograms"]}
    shape = read_volume(train_tomo["tomogram"]).shape

    def targets(name: str, table: ParticleTable) -> Path:
        return write_volume(folder / f"{name}_targets.mrc", sphere_targets(shape, table, radius))

    base_targets = targets("base_" + train_tomo["name"], truth[train_tomo["name"]])
    base = train(
        [train_tomo["tomogram"]],
        [base_targets],
        [truth[train_tomo["name"]]],
        folder / "base",
        n_classes,
        replace(TRAINING, epochs=args.base_epochs, steps_per_epoch=args.steps),
        validation_fraction=0.2,
    )
    print(f"base model trained: {time.perf_counter() - started:.0f} s")
    found = picks(review_tomo, base, folder / "base", radius)
    reviewed_scores = scores(found, truth[review_tomo["name"]], names)
    false_positives = {
        c: reviewed_scores[names[c]].n_detected - reviewed_scores[names[c]].true_positives
        for c in names
        if names[c] in reviewed_scores
    }
    class_id = max(false_positives, key=false_positives.get)
    review = review_by_truth(found, truth[review_tomo["name"]], class_id, N_REVIEWED)
    print(
        f"reviewed {len(found) - review.counts()['pending']} picks of {names[class_id]} "
        f"in {review_tomo['name']} "
        f"({false_positives[class_id]} false positives among {reviewed_scores[names[class_id]].n_detected}): "
        f"{review.counts()}, re-classed {int(np.sum(review.class_id != found.class_id))}, "
        f"moved by {np.linalg.norm(review.xyz - found.xyz, axis=1).max():.1f} voxels at most"
    )
    results = {"base": scores(picks(held_out, base, folder / "base", radius), truth[held_out["name"]], names)}
    for run, tuning_picks in (
        ("fine-tuned, reviewed", kept_after_review(review)),
        ("fine-tuned, not reviewed", found),
    ):
        tag = run.replace(", ", "_").replace(" ", "_")
        tuned = train(
            [train_tomo["tomogram"], review_tomo["tomogram"]],
            [base_targets, targets(tag + "_" + review_tomo["name"], tuning_picks)],
            [truth[train_tomo["name"]], tuning_picks],
            folder / tag,
            n_classes,
            replace(TRAINING, epochs=args.tune_epochs, steps_per_epoch=args.steps, seed=args.tune_seed),
            validation_fraction=0.2,
            initial_weights=base,
        )
        results[run] = scores(picks(held_out, tuned, folder / tag, radius), truth[held_out["name"]], names)
        print(f"{run}: {time.perf_counter() - started:.0f} s")
    print(f"\nHeld-out {held_out['name']}, reviewed class {names[class_id]}, tolerance {TOLERANCE_VOXELS} vx")
    print("| model | false positives of the reviewed class | F1 " + " | F1 ".join(names.values()) + " |")
    print("|---|---|" + "---|" * len(names))
    for run, rows in results.items():
        row = rows[names[class_id]]
        f1 = " | ".join(f"{rows[n].f1:.2f}" if n in rows else "-" for n in names.values())
        print(f"| {run} | {row.n_detected - row.true_positives} of {row.n_detected} | {f1} |")
    print(f"total {time.perf_counter() - started:.0f} s; files in {folder}")


if __name__ == "__main__":
    main()
