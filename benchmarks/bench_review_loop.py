"""Review and retrain: do 20 reviewed picks lower a class's false positives on a held-out tomogram?

On the simulator's demo preset (4 tomograms, seed 0, with vesicles, gold beads and a carbon edge):

1. a base model is trained briefly on tomo_000 + tomo_001 (shape targets, the ``quick``
   preset with fewer epochs: ``bench_threshold.py``'s model, reused when ``--work`` holds it),
   so that it still picks distractors;
2. it picks tomo_002 (the tomogram to review) and tomo_003 (held out);
3. the class with the most false positives in tomo_002 is reviewed: its 20 lowest-score picks
   in the order of :class:`deepfinder.core.annotation.Review`, each moved onto the true
   particle within the tolerance (and re-classed when that particle is of another class),
   rejected when there is none (a perfect reviewer, standing in for the person at the
   review window);
4. the base model is fine-tuned (started from its weights) on tomo_000 + tomo_001 and on
   tomo_002's picks, three ways: as picked (no review: every pick), reviewed (the review's
   output: the accepted and corrected picks only, as the review protocol gives them; picks not
   reviewed are left out), and reviewed plus the rejected picks as background points (class 0:
   patches centred there, labelled background; the train protocol's 'Not particles');
5. each picks tomo_003: false positives of the reviewed class and per-class F1.

Usage: python benchmarks/bench_review_loop.py [--work DIR] [--base-epochs N] [--tune-epochs N]
    [--tune-seed N] [--runs NAME ...]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from simulated_model import train_on_shapes

from deepfinder.core.annotation import Review
from deepfinder.core.cluster import cluster_labels
from deepfinder.core.evaluate import match_by_distance, precision_recall_f1
from deepfinder.core.io import read_volume, read_voxel_size, write_volume
from deepfinder.core.particles import ParticleTable
from deepfinder.core.segment import segment_tomogram
from deepfinder.core.settings import ROTATIONS, TrainingSettings, default_of, training_preset
from deepfinder.core.simulate import simulate_dataset
from deepfinder.core.tables import csv as particle_csv
from deepfinder.core.targets import sphere_targets
from deepfinder.core.train import train

TRAIN, REVIEWED, HELD_OUT = ("tomo_000", "tomo_001"), "tomo_002", "tomo_003"
TOLERANCE_VOXELS = 6
N_REVIEWED = 20
RUNS = ("as picked", "reviewed", "reviewed + rejected as background")


def picks(data: Path, name: str, weights: Path, folder: Path, radius: dict) -> ParticleTable:
    labels = folder / f"{name}_predicted.mrc"
    if not labels.exists():
        segment_tomogram(data / f"{name}.mrc", weights, labels)
    return cluster_labels(np.asarray(read_volume(labels)), radius, tomo=name)


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


def scores(found: ParticleTable, truth: ParticleTable, names: dict) -> dict:
    result = match_by_distance(found, truth, tolerance_voxels=TOLERANCE_VOXELS)
    return {row.name: row for row in precision_recall_f1(result, names)}


def tuning_picks(run: str, found: ParticleTable, review: Review) -> tuple[ParticleTable, ParticleTable]:
    """The particles the label map of the reviewed tomogram is drawn from, and the patch centres."""
    if run == "as picked":
        return found, found
    accepted = review.accepted()
    if run == "reviewed":
        return accepted, accepted
    return accepted, ParticleTable.concat([accepted, replace(review.rejected(), class_id=0)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("bench_review_loop"), help="working folder")
    parser.add_argument("--base-epochs", type=int, default=12)
    parser.add_argument("--tune-epochs", type=int, default=4)
    parser.add_argument("--tune-seed", type=int, default=1, help="seed of the fine-tuning runs")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=RUNS, help="fine-tuning runs to make")
    parser.add_argument(
        "--rotations",
        choices=ROTATIONS,
        default=default_of(TrainingSettings, "rotations"),
        help="training patches' rotations, of the base model and the fine-tunings",
    )
    args = parser.parse_args()
    work, data = args.work, args.work / "data"
    started = time.perf_counter()
    if not (data / "classes.json").exists():
        simulate_dataset(data, preset="demo", n_tomograms=4, seed=0)
    classes = json.loads((data / "classes.json").read_text())
    radius = {c["id"]: c["radius_voxels"] for c in classes}
    names = {c["id"]: c["name"] for c in classes}
    truth = {
        name: particle_csv.read(data / f"{name}_particles.csv").particles
        for name in (*TRAIN, REVIEWED, HELD_OUT)
    }
    base = train_on_shapes(
        data, TRAIN, work, training_preset("quick", epochs=args.base_epochs, seed=0, rotations=args.rotations)
    )
    print(f"base model: {time.perf_counter() - started:.0f} s")
    found = picks(data, REVIEWED, base, work, radius)
    reviewed_scores = scores(found, truth[REVIEWED], names)
    false_positives = {
        c: reviewed_scores[n].n_detected - reviewed_scores[n].true_positives for c, n in names.items()
    }
    class_id = max(false_positives, key=false_positives.get)
    review = review_by_truth(found, truth[REVIEWED], class_id, N_REVIEWED)
    print(
        f"reviewed {N_REVIEWED} picks of {names[class_id]} in {REVIEWED} "
        f"({false_positives[class_id]} false positives among {reviewed_scores[names[class_id]].n_detected}): "
        f"{review.counts()}, re-classed {int(np.sum(review.class_id != found.class_id))}"
    )
    results = {"base": scores(picks(data, HELD_OUT, base, work, radius), truth[HELD_OUT], names)}
    shape = read_volume(data / f"{REVIEWED}.mrc").shape
    voxel_size = read_voxel_size(data / f"{REVIEWED}.mrc")
    for run in args.runs:
        tag = f"{run.replace(' + ', '_').replace(' ', '_')}_seed{args.tune_seed}"
        targeted, centres = tuning_picks(run, found, review)
        targets = write_volume(
            work / f"{tag}_{REVIEWED}_targets.mrc", sphere_targets(shape, targeted, radius), voxel_size
        )
        tuned = train(
            [data / f"{name}.mrc" for name in (*TRAIN, REVIEWED)],
            [*(work / f"{name}_targets.mrc" for name in TRAIN), targets],
            [*(truth[name] for name in TRAIN), centres],
            work / tag,
            len(classes) + 1,
            training_preset("quick", epochs=args.tune_epochs, seed=args.tune_seed, rotations=args.rotations),
            validation_fraction=0.2,
            initial_weights=base,
        )
        results[run] = scores(picks(data, HELD_OUT, tuned, work / tag, radius), truth[HELD_OUT], names)
        print(f"{run}: {time.perf_counter() - started:.0f} s")
    print(f"\nHeld-out {HELD_OUT}, reviewed class {names[class_id]}, fine-tuning seed {args.tune_seed}")
    print("| model | false positives of the reviewed class | F1 " + " / ".join(names.values()) + " |")
    print("|---|---|---|")
    for run, rows in results.items():
        row = rows[names[class_id]]
        f1 = " / ".join(f"{rows[n].f1:.2f}" for n in names.values())
        print(f"| {run} | {row.n_detected - row.true_positives} of {row.n_detected} | {f1} |")
    print(f"total {time.perf_counter() - started:.0f} s; files in {work}")


if __name__ == "__main__":
    main()
