"""SHREC'19-like quality: train on a few simulated tomograms under a CPU budget, score a held-out one.

    python benchmarks/bench_shrec.py [--work DIR] [--n-train 3] [--train-minutes 30]
                                     [--train-wall-minutes M] [--targets shapes|spheres|both]
                                     [--loss dice_cross_entropy] [--learning-rate 1e-3]
                                     [--final-learning-rate 1e-4] [--epochs N] [--bin 2]
                                     [--patch 16] [--batch 12] [--shift 4] [--precision auto] [--ceiling]
                                     [--model TRAINED.weights.h5] [--crops 4 34] [--name RUN]

Simulates (bench preset: SHREC'19 templates, 512 x 512 x 200 at 10 A/voxel, SNR 0.1) the
training layouts 0..n-1 of ``shrec19/object_list_train.xml`` and, as the
held-out tomogram, layout 8 (the SHREC'19 validation tomogram), into ``--work`` (reused when
already there). Builds label maps (rotated shape masks or class-radius balls), trains the
U-net until ``--train-minutes`` of process CPU time (all threads: user + system) are spent,
segments the held-out tomogram, clusters the label map and prints per-class precision,
recall and F1 under the SHREC'19 occupancy rule and the distance rule (tolerance = class
radius). By default (``--bin 2``) it trains and segments 2x-binned copies of the tomograms
(20 A/voxel, as DeepFinder's SHREC'21 re-run) and scores the particles found at the full size;
``--bin 1`` works at 10 A/voxel and also saves a PNG of a predicted label-map slice next to the
truth. ``--model`` scores an already trained model; ``--crops 4 34`` also segments with exact
tiling and counts the labels that differ. The first crop is also scored with the scores
averaged over the tomogram's four 180-degree rotations (``average_rotations``).

The SHREC'19 data is found as ``benchmarks/shrec_data.py`` says (``--shrec-dir``); skips (exit 0)
when it is absent.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from shrec_data import add_shrec_dir_option, find_shrec_dir

HELD_OUT_LAYOUT = 8
HELD_OUT_NAME = "tomo_test"
VOXEL_SIZE = 10.0  # Angstrom, the bench preset's
# Clusters smaller than this fraction of the class's ball volume are dropped: a fixed prior,
# not tuned on the held-out tomogram.
MIN_CLUSTER_FRACTION = 0.1


class BudgetSpent(Exception):
    """Raised from the epoch hook to stop training once the CPU budget is used."""


def cpu_seconds() -> float:
    """Process CPU time of all threads (user + system), seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_model() -> str:
    """The CPU's model name and its bfloat16 instructions: the CPU budget buys several times
    more training steps where they exist (benchmarks/RESULTS.md)."""
    from deepfinder.core.model import cpu_bfloat16_instructions

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    name = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
        "unknown CPU",
    )
    return f"{name} ({', '.join(cpu_bfloat16_instructions()) or 'no bfloat16 instructions'})"


def simulate(work: Path, n_train: int, seed: int, shrec_dir: Path) -> dict:
    """Training tomograms tomo_000.. (layouts 0..n_train-1) and the held-out one (layout 8)."""
    from deepfinder.core.io import write_particles_csv, write_volume
    from deepfinder.core.simulate import (
        PRESETS,
        shrec19_layout,
        shrec19_shapes,
        simulate_dataset,
        simulate_tomogram,
    )

    started, cpu = time.perf_counter(), cpu_seconds()
    names = [f"tomo_{i:03d}" for i in range(n_train)]
    if (
        not all((work / f"{name}_occupancy.mrc").exists() for name in names)
        or not (work / "classes.json").exists()
    ):
        simulate_dataset(work, preset="bench", n_tomograms=n_train, seed=seed, shrec_dir=shrec_dir)
    if not (work / f"{HELD_OUT_NAME}_occupancy.mrc").exists():
        recipe = PRESETS["bench"]
        print(f"{HELD_OUT_NAME}: simulating SHREC'19 layout {HELD_OUT_LAYOUT}", file=sys.stderr, flush=True)
        result = simulate_tomogram(
            shrec19_shapes(recipe.specimen.voxel_size, shrec_dir),
            recipe.specimen,
            recipe.tilt_series,
            seed=np.random.SeedSequence([seed, HELD_OUT_LAYOUT]),
            layout=shrec19_layout(HELD_OUT_LAYOUT, shrec_dir),
            name=HELD_OUT_NAME,
        )
        voxel_size = recipe.specimen.voxel_size
        write_volume(work / f"{HELD_OUT_NAME}.mrc", result.tomogram, voxel_size)
        write_particles_csv(work / f"{HELD_OUT_NAME}_particles.csv", result.particles)
        write_volume(work / f"{HELD_OUT_NAME}_labels.mrc", result.labels, voxel_size)
        write_volume(work / f"{HELD_OUT_NAME}_occupancy.mrc", result.occupancy, voxel_size)
        del result
    return {"train": names, "wall": time.perf_counter() - started, "cpu": cpu_seconds() - cpu}


def bin_data(work: Path, names: list[str], classes: list[dict], shrec_dir: Path) -> Path:
    """The tomograms (means of 2 x 2 x 2 voxels), particle tables, masks and class radii at twice
    the voxel size, in ``work/bin2`` (reused when there)."""
    import dataclasses

    from deepfinder.core.io import read_particles_csv, read_volume, write_particles_csv, write_volume
    from deepfinder.core.segment import downsample_scores
    from deepfinder.core.simulate import shrec19_shapes

    binned = work / "bin2"
    (binned / "masks").mkdir(parents=True, exist_ok=True)
    for name in names + [HELD_OUT_NAME]:
        if not (binned / f"{name}_particles.csv").exists():
            volume = np.asarray(read_volume(work / f"{name}.mrc"), dtype=np.float32)
            write_volume(binned / f"{name}.mrc", downsample_scores(volume[..., None])[..., 0], VOXEL_SIZE * 2)
            table = read_particles_csv(work / f"{name}_particles.csv")
            # Binned voxel k averages voxels 2k and 2k + 1 (the inverse of segment.unbin_positions).
            write_particles_csv(
                binned / f"{name}_particles.csv", dataclasses.replace(table, xyz=(table.xyz - 0.5) / 2)
            )
    binned_classes = []
    masks = {shape.name: shape.mask for shape in shrec19_shapes(VOXEL_SIZE * 2, shrec_dir)}
    for c in classes:
        write_volume(binned / c["mask"], masks[c["name"]].astype(np.int8), VOXEL_SIZE * 2)
        binned_classes.append({**c, "radius_voxels": c["radius_voxels"] / 2})
    (binned / "classes.json").write_text(json.dumps(binned_classes, indent=1))
    return binned


def build_targets(
    work: Path, names: list[str], classes: list[dict], kind: str, voxel_size: float
) -> list[Path]:
    """Label map per training tomogram: rotated shape masks or balls of the class radius."""
    from deepfinder.core.io import read_particles_csv, read_volume, write_volume
    from deepfinder.core.targets import shape_targets, sphere_targets

    paths = []
    for name in names:
        path = work / f"{name}_targets_{kind}.mrc"
        if not path.exists():
            shape = read_volume(work / f"{name}.mrc").shape
            table = read_particles_csv(work / f"{name}_particles.csv")
            if kind == "shapes":
                masks = {c["id"]: np.asarray(read_volume(work / c["mask"])) > 0 for c in classes}
                labels = shape_targets(shape, table, masks)
            else:
                labels = sphere_targets(shape, table, {c["id"]: c["radius_voxels"] for c in classes})
            write_volume(path, labels, voxel_size)
        paths.append(path)
    return paths


def train_with_budget(
    work: Path, names: list[str], targets: list[Path], classes: list[dict], kind: str, args
) -> dict:
    """Train until the CPU budget would be exceeded by one more epoch; returns the model and times."""
    from deepfinder.core.io import read_particles_csv
    from deepfinder.core.settings import TrainingSettings
    from deepfinder.core.train import last_checkpoint, train

    out_dir = work / f"model_{run_name(kind, args)}"
    budget = 60.0 * args.train_minutes
    wall_budget = None if args.train_wall_minutes is None else 60.0 * args.train_wall_minutes
    epoch_cpu, epoch_wall, stopped_by = [], [], []

    def stop_when_spent(epoch: int, row: dict) -> None:
        used, elapsed = cpu_seconds() - cpu, time.perf_counter() - started
        epoch_cpu.append(used - sum(epoch_cpu))
        epoch_wall.append(elapsed - sum(epoch_wall))
        print(
            f"[budget] epoch {epoch}: {used / 60:.1f} of {args.train_minutes:g} CPU-min, "
            f"{elapsed / 60:.1f} wall-min",
            flush=True,
        )
        # Stop before an epoch that would overrun a budget (the last epoch's cost as the estimate).
        if used + epoch_cpu[-1] > budget:
            stopped_by.append("CPU budget")
            raise BudgetSpent
        if wall_budget is not None and elapsed + epoch_wall[-1] > wall_budget:
            stopped_by.append("wall-clock cap")
            raise BudgetSpent

    def run(folder: Path, epochs: int, on_epoch_end) -> None:
        settings = TrainingSettings(
            patch_size=args.patch,
            batch_size=args.batch,
            epochs=epochs,
            steps_per_epoch=args.steps,
            validation_steps=args.validation_steps,
            loss=args.loss,
            learning_rate=args.learning_rate,
            final_learning_rate=args.final_learning_rate or None,
            shift_voxels=args.shift,
            seed=args.seed,
            precision=args.precision,
        )
        train(
            [work / f"{name}.mrc" for name in names],
            targets,
            [read_particles_csv(work / f"{name}_particles.csv") for name in names],
            folder,
            len(classes) + 1,
            settings,
            validation_fraction=0.05,
            class_names=["background"] + [c["name"] for c in classes],
            voxel_size=VOXEL_SIZE * args.bin,
            resume=False,
            on_epoch_end=on_epoch_end,
        )

    epochs = args.epochs or planned_epochs(lambda folder, hook: run(folder, 2, hook), out_dir, budget)
    started, cpu = time.perf_counter(), cpu_seconds()
    try:
        run(out_dir, epochs, stop_when_spent)
    except BudgetSpent:
        pass
    history = json.loads((out_dir / "history.json").read_text())
    best = json.loads((out_dir / "best.json").read_text())
    # The last epoch's model, not the engine's best-by-validation one: within a budget this short
    # the loss is still falling, and the voxel F1 of the validation patches stays ~0 for many
    # epochs, so "best" would be an arbitrary early epoch.
    return {
        "weights": last_checkpoint(out_dir),
        "wall": time.perf_counter() - started,
        "cpu": cpu_seconds() - cpu,
        "epochs": len(history),
        "best_epoch": best["best_epoch"],
        "steps": len(history) * args.steps,
        "history": history,
        "stopped_by": stopped_by[0] if stopped_by else "epoch limit",
    }


def planned_epochs(run_two_epochs, out_dir: Path, budget_seconds: float) -> int:
    """Epochs that fit in the CPU budget, from the cost of a second epoch of a throw-away run
    (the first one compiles), so that the step-size decay spans the budget on any machine."""
    import shutil

    marks = []
    folder = out_dir.with_name(out_dir.name + "_calibration")
    run_two_epochs(folder, lambda epoch, row: marks.append(cpu_seconds()))
    shutil.rmtree(folder)
    epoch_seconds = marks[1] - marks[0]
    epochs = max(int(budget_seconds / epoch_seconds), 1)
    print(f"[budget] {epoch_seconds:.1f} CPU-s per epoch: {epochs} epochs planned", flush=True)
    return epochs


def run_name(kind: str, args) -> str:
    """Names the model folder and output files of one run."""
    return f"{kind}_{args.loss}" + (f"_{args.name}" if args.name else "")


def segment_and_score(
    work: Path,
    data: Path,
    weights: Path,
    classes: list[dict],
    data_classes: list[dict],
    tag: str,
    precision: str = "auto",
    crop_voxels: int = 4,
    average_rotations: bool = False,
) -> dict:
    """Segment the held-out tomogram of ``data`` (``work`` or its 2x-binned copy), cluster, match
    with both rules against the truth in ``work``; returns tables and times."""
    import dataclasses

    from deepfinder.core.io import read_volume, write_particles_csv
    from deepfinder.core.segment import segment_tomogram, unbin_positions
    from deepfinder.core.settings import SegmentationSettings

    binned = data != work
    started, cpu = time.perf_counter(), cpu_seconds()
    segmented = segment_tomogram(
        data / f"{HELD_OUT_NAME}.mrc",
        weights,
        data / f"{HELD_OUT_NAME}_pred_{tag}.mrc",
        data / f"{HELD_OUT_NAME}_scores_{tag}.mrc",
        SegmentationSettings(
            precision=precision, crop_voxels=crop_voxels, average_rotations=average_rotations
        ),
    )
    segment_times = (time.perf_counter() - started, cpu_seconds() - cpu)

    started, cpu = time.perf_counter(), cpu_seconds()
    label_map = np.asarray(read_volume(segmented["labels"], mmap=False)).astype(np.uint8)
    score_maps = {k: read_volume(path) for k, path in segmented["scores"].items()}
    found = cluster(label_map, data_classes, score_maps)
    if binned:
        found = dataclasses.replace(found, xyz=unbin_positions(found.xyz))
    write_particles_csv(work / f"{HELD_OUT_NAME}_found_{tag}.csv", found)
    cluster_times = (time.perf_counter() - started, cpu_seconds() - cpu)

    if not binned:
        save_slice_png(work, segmented["labels"], tag)
    return {
        **score(work, found, classes),
        "segment": segment_times,
        "cluster": cluster_times,
        "label_map": label_map,
    }


def print_scored(title: str, scored: dict) -> None:
    """Both rules' tables, the class confusion and the times of one segmentation of the held-out tomogram."""
    from deepfinder.core.evaluate import format_table

    print(f"\nHeld-out SHREC'19 layout {HELD_OUT_LAYOUT}, {title}, occupancy rule:")
    print(format_table(scored["occupancy"]))
    print("\nDistance rule (tolerance = class radius):")
    print(format_table(scored["distance"]))
    print("\nDetections by the class of the particle they lie on:")
    print(scored["confusion"])
    print(
        f"Segmentation {scored['segment'][0]:.0f} s wall, {scored['segment'][1]:.0f} s CPU; "
        f"clustering {scored['cluster'][0]:.0f} s wall, {scored['cluster'][1]:.0f} s CPU"
    )


def score_true_labels(work: Path, classes: list[dict]) -> dict:
    """Clustering and matching applied to the simulator's true label map: the pipeline's ceiling."""
    from deepfinder.core.io import read_volume

    label_map = np.asarray(read_volume(work / f"{HELD_OUT_NAME}_labels.mrc", mmap=False)).astype(np.uint8)
    return score(work, cluster(label_map, classes), classes)


def cluster(label_map: np.ndarray, classes: list[dict], score_maps: dict | None = None):
    """Particles of a label map of the held-out tomogram: class radii, fixed minimum cluster size."""
    from deepfinder.core.cluster import ball_volume, find_clusters

    radius = {c["id"]: c["radius_voxels"] for c in classes}
    min_size = {k: int(MIN_CLUSTER_FRACTION * ball_volume(r)) for k, r in radius.items()}
    return find_clusters(label_map, radius, min_size, score_maps, tomo=HELD_OUT_NAME).particles


def score(work: Path, found, classes: list[dict]) -> dict:
    """Particles found in the held-out tomogram against its truth: occupancy rule, distance rule
    (tolerance = class radius) and the class confusion."""
    from deepfinder.core.evaluate import (
        confusion_by_occupancy,
        format_confusion,
        match_by_distance,
        match_by_occupancy,
        precision_recall_f1,
    )
    from deepfinder.core.io import read_particles_csv, read_volume

    reference = read_particles_csv(work / f"{HELD_OUT_NAME}_particles.csv")
    occupancy = np.asarray(read_volume(work / f"{HELD_OUT_NAME}_occupancy.mrc", mmap=False))
    names = {c["id"]: c["name"] for c in classes}
    by_distance = []
    for c in classes:
        rows = precision_recall_f1(
            match_by_distance(
                found.of_class(c["id"]),
                reference.of_class(c["id"]),
                tolerance_voxels=float(c["radius_voxels"]),
            ),
            names,
        )
        by_distance += [row for row in rows if row.class_id is not None]
    return {
        "occupancy": precision_recall_f1(match_by_occupancy(found, occupancy, reference), names),
        "distance": by_distance,
        "confusion": format_confusion(*confusion_by_occupancy(found, occupancy, reference), names),
    }


def save_slice_png(work: Path, labels_path: Path, tag: str) -> Path:
    """Middle z-slice of the tomogram, the true label map and the predicted one, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepfinder.core.io import read_volume

    tomogram = read_volume(work / f"{HELD_OUT_NAME}.mrc")
    z = tomogram.shape[0] // 2
    panels = [
        ("tomogram", np.asarray(tomogram[z]), "gray"),
        ("truth", np.asarray(read_volume(work / f"{HELD_OUT_NAME}_labels.mrc")[z]), "tab20"),
        ("predicted", np.asarray(read_volume(labels_path)[z]), "tab20"),
    ]
    figure, axes = plt.subplots(1, 3, figsize=(18, 6.4))
    for axis, (title, image, cmap) in zip(axes, panels):
        if cmap == "tab20":
            axis.imshow(np.ma.masked_equal(image, 0), cmap=cmap, vmin=0, vmax=20, interpolation="nearest")
            axis.set_facecolor("black")
        else:
            axis.imshow(image, cmap=cmap)
        axis.set_title(f"{title}, z = {z}")
        axis.axis("off")
    figure.tight_layout()
    path = work / f"{HELD_OUT_NAME}_slice_{tag}.png"
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def markdown_rows(occupancy_rows, distance_rows) -> list[str]:
    """Markdown table: per class (and overall) precision / recall / F1 under both rules."""
    distance = {row.class_id: row for row in distance_rows}
    tp = sum(row.true_positives for row in distance_rows)
    n_found = sum(row.n_detected for row in distance_rows)
    n_reference = sum(row.n_reference for row in distance_rows)
    # Distance matching is one-to-one, so true positives are also the reference particles found.
    overall = (
        f"{tp / max(n_found, 1):.2f} / {tp / max(n_reference, 1):.2f} / "
        f"{2 * tp / max(n_found + n_reference, 1):.2f}"
    )
    lines = [
        "| Class | Reference | Found | Occupancy rule P / R / F1 | Distance rule P / R / F1 |",
        "|---|---|---|---|---|",
    ]
    for row in occupancy_rows:
        other = distance.get(row.class_id)
        if row.class_id is None:
            text = overall
        elif other is None:
            text = "- / - / -"
        else:
            text = f"{other.precision:.2f} / {other.recall:.2f} / {other.f1:.2f}"
        lines.append(
            f"| {row.name} | {row.n_reference} | {row.n_detected} | "
            f"{row.precision:.2f} / {row.recall:.2f} / {row.f1:.2f} | {text} |"
        )
    return lines


def main() -> int:
    from deepfinder.core.model import resolve_precision
    from deepfinder.core.settings import LOSSES, PRECISIONS

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "deepfinder_bench_shrec",
        help="folder for simulated data, models and outputs (reused)",
    )
    parser.add_argument("--n-train", type=int, default=3, help="training tomograms (layouts 0..n-1)")
    parser.add_argument("--train-minutes", type=float, default=30.0, help="training budget, CPU minutes")
    parser.add_argument(
        "--train-wall-minutes",
        type=float,
        default=None,
        help="also stop training after this many wall-clock minutes (shared machines)",
    )
    parser.add_argument("--targets", choices=("shapes", "spheres", "both"), default="shapes")
    parser.add_argument("--loss", choices=LOSSES, default="dice_cross_entropy")
    # 1e-3 with cross-entropy alone drove the softmax to all-background within 40 steps here (SNR 0.1).
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--final-learning-rate",
        type=float,
        default=1e-4,
        help="step size decays geometrically to this by the last planned epoch (0: constant)",
    )
    parser.add_argument(
        "--epochs",
        type=int,
        default=None,
        help="planned epochs (the length of the step-size decay); default: as many as "
        "the budget holds, measured on two throw-away epochs",
    )
    parser.add_argument(
        "--patch",
        type=int,
        default=16,
        help="training patch edge, voxels: small patches give more steps per CPU-minute",
    )
    parser.add_argument("--batch", type=int, default=12, help="12 holds every class in every batch")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument(
        "--steps",
        type=int,
        default=10,
        help="training steps per epoch (short epochs: the budget is checked per epoch)",
    )
    parser.add_argument("--validation-steps", type=int, default=2)
    parser.add_argument("--shift", type=int, default=4, help="patch-centre jitter, voxels")
    parser.add_argument(
        "--bin",
        type=int,
        choices=(1, 2),
        default=2,
        help="2: train and segment the tomograms binned by 2 (means of 2^3 voxels, "
        "20 A/voxel); particles found are scored at the full size",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--name", default="", help="suffix of this run's model folder and output files (parallel runs)"
    )
    parser.add_argument(
        "--crops",
        type=int,
        nargs="+",
        default=[4],
        help="segment with each of these tile crops (voxels); the first is reported, "
        "the others compared with it (34 makes tiling exact)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="score this trained model (*.weights.h5) instead of training one",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also score the true label map of the held-out tomogram (pipeline ceiling)",
    )
    add_shrec_dir_option(parser)
    args = parser.parse_args()
    shrec_dir = find_shrec_dir(args.shrec_dir)
    if shrec_dir is None:
        return 0
    logging.basicConfig(format="%(message)s")
    logging.getLogger("deepfinder").setLevel(logging.INFO)  # the simulator's progress

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    print(
        f"Machine: {cpu_model()}, {os.cpu_count()} cores; U-net arithmetic: "
        f"{resolve_precision(args.precision)}"
    )
    simulated = simulate(work, args.n_train, args.seed, shrec_dir)
    classes = json.loads((work / "classes.json").read_text())
    print(
        f"Simulation: {simulated['wall']:.0f} s wall, {simulated['cpu']:.0f} s CPU "
        f"(0 when reused from {work})"
    )
    report = []
    if args.ceiling:
        ceiling = score_true_labels(work, classes)
        print("\nCeiling: clustering and matching of the true label map")
        print("\n".join(markdown_rows(ceiling["occupancy"], ceiling["distance"])))
        print(ceiling["confusion"])
    data, data_classes = work, classes
    if args.bin > 1:
        data = bin_data(work, simulated["train"], classes, shrec_dir)
        data_classes = json.loads((data / "classes.json").read_text())
    for kind in ("shapes", "spheres") if args.targets == "both" else (args.targets,):
        targets = build_targets(data, simulated["train"], data_classes, kind, VOXEL_SIZE * args.bin)
        if args.model is None:
            trained = train_with_budget(data, simulated["train"], targets, data_classes, kind, args)
            last = trained["history"][-1]
            print(
                f"Training ({kind}): {trained['epochs']} epochs = {trained['steps']} steps of "
                f"{args.batch} x {args.patch}^3, {trained['cpu'] / 60:.1f} CPU-min, "
                f"{trained['wall'] / 60:.1f} wall-min (stopped by {trained['stopped_by']}), best epoch "
                f"{trained['best_epoch']}, last train loss {last['train_loss']:.4f}, last val mean voxel "
                f"F1 {last['val_mean_f1']:.3f}"
            )
        else:
            trained = {"weights": args.model, "history": []}
        first = None
        for crop in args.crops:
            scored = segment_and_score(
                work,
                data,
                trained["weights"],
                classes,
                data_classes,
                f"{run_name(kind, args)}_crop{crop}",
                args.precision,
                crop,
            )
            print_scored(f"{kind} targets, tiles cropped by {crop} voxels", scored)
            if first is None:
                first = scored
            else:
                differ = first["label_map"] != scored["label_map"]
                particle = (first["label_map"] > 0) | (scored["label_map"] > 0)
                print(
                    f"Crop {args.crops[0]} vs crop {crop}: labels differ on {differ.mean():.4%} of all "
                    f"voxels, {differ[particle].mean():.2%} of the voxels either calls a particle"
                )
        rotated = segment_and_score(
            work,
            data,
            trained["weights"],
            classes,
            data_classes,
            f"{run_name(kind, args)}_crop{args.crops[0]}_rotations",
            args.precision,
            args.crops[0],
            average_rotations=True,
        )
        print_scored(
            f"{kind} targets, tiles cropped by {args.crops[0]} voxels, scores averaged over 4 rotations",
            rotated,
        )
        report.append(
            {
                "targets": kind,
                "train": {k: v for k, v in trained.items() if k != "history"},
                "segment": first["segment"],
                "cluster": first["cluster"],
                "table": markdown_rows(first["occupancy"], first["distance"]),
                "segment_rotations": rotated["segment"],
                "table_rotations": markdown_rows(rotated["occupancy"], rotated["distance"]),
                "val_f1_per_epoch": [row["val_mean_f1"] for row in trained["history"]],
            }
        )
    report_path = work / f"report{'_' + args.name if args.name else ''}.json"
    report_path.write_text(json.dumps(report, indent=1, default=str))
    for entry in report:
        print(f"\nMarkdown ({entry['targets']}):")
        print("\n".join(entry["table"]))
        print(f"\nMarkdown ({entry['targets']}, scores averaged over 4 rotations):")
        print("\n".join(entry["table_rotations"]))
    return 0


if __name__ == "__main__":
    from deepfinder.core.logs import engine_log

    with engine_log():
        status = main()
    sys.exit(status)
