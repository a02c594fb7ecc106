"""SHREC'19-like quality: train on a few simulated tomograms for a budget of steps, score held-out ones.

    python benchmarks/bench_shrec.py [--work DIR] [--n-train 3] [--train-settings bench]
                                     [--held-out 7 8] [--held-out-settings bench bench_shifted]
                                     [--data-seed 0]
                                     [--seed 0] [--steps 15000] [--train-wall-minutes M] [--resume]
                                     [--targets shapes|spheres|both] [--loss dice_cross_entropy]
                                     [--learning-rate 1e-3] [--final-learning-rate 1e-4]
                                     [--steps-per-epoch 100] [--bin 2] [--binning-in-training]
                                     [--patch 16] [--batch 12] [--shift 4]
                                     [--rotations tilt_axis] [--added-noise 0]
                                     [--precision auto] [--ceiling] [--match-spectrum]
                                     [--model TRAINED.weights.h5] [--coarse-model BINNED.weights.h5]
                                     [--crops 4 34] [--modes plain rotations] [--name RUN]
                                     [--prepare-only]

Simulates (bench preset: SHREC'19 templates, 512 x 512 x 200 at 10 A/voxel, SNR 0.1) the training layouts
0..n-1 of ``shrec19/object_list_train.xml`` and each held-out layout (``--held-out``, default 7 and 8; 8 is
the SHREC'19 validation tomogram) under two imaging settings: the training data's (preset ``bench``) and
another one (preset ``bench_shifted``: SNR 0.05, defocus 3 um, tilts +-50 degrees, thicker ice), as
``heldout<layout>_<preset>`` (``--held-out-settings bench`` scores only the first). The data depend on
``--data-seed`` only (a held-out layout is simulated with the seed (data seed, layout) under both presets: the
same specimen imaged twice), so runs with other training seeds (``--seed``) share them. ``--train-settings
bench_shifted`` trains on the training layouts imaged under the other setting
(``train<layout>_bench_shifted``, seed (data seed, layout)), ``--train-settings bench bench_shifted`` on both
sets of tomograms. Everything is written into ``--work`` and reused: only what is missing is simulated, also
in folders of older versions of this script.

Builds label maps (rotated shape masks or class-radius balls), trains the U-net for ``--steps`` steps (a
budget that means the same on every machine; the report gives the process CPU time it took, all threads, and
the CPU model, and ``--train-wall-minutes`` can cap it), segments every held-out tomogram, plainly and with
the scores averaged over the tomogram's four 180-degree rotations (``average_rotations``; with
``--match-spectrum`` each held-out tomogram is first filtered to the training tomograms' amplitude spectrum,
the engine's ``match_spectrum``), clusters the label maps and prints per-class precision, recall and F1
under the SHREC'19 occupancy rule and the distance rule (tolerance = class radius), and the class confusion.
By default (``--bin 2``) it trains and segments 2x-binned copies of the tomograms (20 A/voxel, as
DeepFinder's SHREC'21 re-run) and scores the particles found at the full size; ``--bin 1`` works at 10
A/voxel and also saves a PNG of a predicted label-map slice next to the truth. ``--model`` scores an already
trained model (report ``report_<name>_rescored.json``, so that a training run's report stays); with ``--bin
1``, ``--coarse-model`` averages its scores with those of a model trained on the 2x-binned tomograms (the
engine's ``coarse_weights_path``); ``--crops 4 34`` also segments the first held-out tomogram with exact
tiling and counts the labels that differ.

The report ``report_<name>.json`` holds, per targets kind, the training and, per held-out layout,
setting and mode (plain, rotations), the per-class scores under both rules and the confusion counts;
``benchmarks/summarise_shrec.py`` summarises several reports (seeds) in markdown tables, and this
script prints that summary for its own run at the end.

Several runs may share one ``--work`` folder: the data (simulation, binning, label maps) is prepared
under a lock (``prepare.lock``), so runs started together take turns and the later ones find it made;
``--prepare-only`` prepares it and stops. Give each run its own ``--name``.

The SHREC'19 data is found as ``benchmarks/shrec_data.py`` says (``--shrec-dir``); skips (exit 0)
when it is absent.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fcntl
import functools
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
from summarise_shrec import print_summary, report_scores

from deepfinder.core.tables import csv as particle_csv

# The imaging settings held-out tomograms are simulated under, the training data's first.
SETTINGS = ("bench", "bench_shifted")
SHREC19_LAYOUTS = 9  # layouts 0-8 in object_list_train.xml
VOXEL_SIZE = 10.0  # Angstrom, the bench presets'
# Clusters smaller than this fraction of the class's ball volume are dropped: a fixed prior,
# not tuned on the held-out tomograms.
MIN_CLUSTER_FRACTION = 0.1


class BudgetSpent(Exception):
    """Raised from the epoch hook to stop training at the wall-clock cap."""


def cpu_seconds() -> float:
    """Process CPU time of all threads (user + system), seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_model() -> str:
    """The CPU's model name and its bfloat16 instructions, which make a training step several times
    cheaper where they exist."""
    from deepfinder.core.devices import cpu_bfloat16_instructions

    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        info = ""
    name = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
        "unknown CPU",
    )
    return f"{name} ({', '.join(cpu_bfloat16_instructions()) or 'no bfloat16 instructions'})"


def held_out_name(layout: int, setting: str) -> str:
    """File stem, and tomogram name in the particle tables, of a held-out layout under a preset."""
    return f"heldout{layout}_{setting}"


@contextlib.contextmanager
def data_lock(work: Path):
    """Hold ``work/prepare.lock`` while the data is prepared, waiting while another run holds it:
    runs sharing ``work`` never write the same file at once nor read a half-made dataset."""
    with open(work / "prepare.lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"Waiting for another run preparing the data in {work}", flush=True)
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def check_data_seed(work: Path, data_seed: int) -> None:
    """Refuse a work folder whose data was simulated with another data seed; record the seed."""
    record = work / "data_seed.json"
    if record.exists():
        made = json.loads(record.read_text())["data_seed"]
        if made != data_seed:
            raise SystemExit(
                f"{work} holds data simulated with --data-seed {made}: give --data-seed {made} "
                "or another --work folder"
            )
        return
    if any(work.glob("tomo_*.mrc")):
        print(
            f"{work} was made by an older bench_shrec.py, which simulated with --seed: its training "
            f"tomograms are taken as of --data-seed {data_seed}"
        )
    record.write_text(json.dumps({"data_seed": data_seed}) + "\n")


@functools.cache
def shrec_shapes(voxel_size: float, shrec_dir: Path) -> list:
    """The SHREC'19 classes' shapes at ``voxel_size`` (Angstrom), loaded once per run."""
    from deepfinder.core.simulate import shrec19_shapes

    return shrec19_shapes(voxel_size, shrec_dir)


def simulate(
    work: Path,
    n_train: int,
    held_out: list[int],
    data_seed: int,
    shrec_dir: Path,
    train_settings: tuple[str, ...] = ("bench",),
) -> dict:
    """The missing ones of: the training tomograms of layouts 0..n_train-1 under each of
    ``train_settings`` (``tomo_000``.. under ``bench``, seeds (data_seed, i); ``train<layout>_<setting>``
    under another, seed (data_seed, layout)) and each held-out layout under each of :data:`SETTINGS`
    (seed (data_seed, layout) under both)."""
    from deepfinder.core.simulate import simulate_dataset, write_classes

    started, cpu = time.perf_counter(), cpu_seconds()
    names = []
    if "bench" in train_settings:
        names = [f"tomo_{i:03d}" for i in range(n_train)]
        if not all((work / f"{name}_occupancy.mrc").exists() for name in names):
            simulate_dataset(work, preset="bench", n_tomograms=n_train, seed=data_seed, shrec_dir=shrec_dir)
    if not (work / "classes.json").exists():
        write_classes(work, shrec_shapes(VOXEL_SIZE, shrec_dir), VOXEL_SIZE)
    for setting in train_settings:
        if setting != "bench":
            names += [
                simulate_layout(work, f"train{layout}_{setting}", layout, setting, data_seed, shrec_dir)
                for layout in range(n_train)
            ]
    held = [
        {"layout": layout, "setting": setting, "name": held_out_name(layout, setting)}
        for layout in held_out
        for setting in SETTINGS
    ]
    for tomogram in held:
        simulate_layout(work, tomogram["name"], tomogram["layout"], tomogram["setting"], data_seed, shrec_dir)
    return {
        "train": names,
        "held_out": held,
        "wall": time.perf_counter() - started,
        "cpu": cpu_seconds() - cpu,
    }


def simulate_layout(work: Path, name: str, layout: int, setting: str, data_seed: int, shrec_dir: Path) -> str:
    """SHREC'19 ``layout`` imaged under preset ``setting`` as ``work/<name>*``, unless already there."""
    from deepfinder.core.io import write_volume
    from deepfinder.core.simulate import PRESETS, shrec19_layout, simulate_tomogram

    if (work / f"{name}_occupancy.mrc").exists():
        return name
    print(f"{name}: simulating SHREC'19 layout {layout}", file=sys.stderr, flush=True)
    recipe = PRESETS[setting]
    voxel_size = recipe.specimen.voxel_size
    result = simulate_tomogram(
        shrec_shapes(voxel_size, shrec_dir),
        recipe.specimen,
        recipe.tilt_series,
        seed=np.random.SeedSequence([data_seed, layout]),
        layout=shrec19_layout(layout, shrec_dir),
        name=name,
    )
    write_volume(work / f"{name}.mrc", result.tomogram, voxel_size)
    particle_csv.write(work / f"{name}_particles.csv", result.particles)
    write_volume(work / f"{name}_labels.mrc", result.labels, voxel_size)
    # Last: its presence marks a complete tomogram.
    write_volume(work / f"{name}_occupancy.mrc", result.occupancy, voxel_size)
    return name


def bin_data(work: Path, names: list[str], classes: list[dict], shrec_dir: Path) -> Path:
    """The tomograms (means of 2 x 2 x 2 voxels), particle tables, masks and class radii at twice
    the voxel size, in ``work/bin2`` (the missing ones)."""
    from deepfinder.core.io import read_volume, write_volume
    from deepfinder.core.segment import bin_positions, bin_volume

    binned = work / "bin2"
    (binned / "masks").mkdir(parents=True, exist_ok=True)
    for name in names:
        if not (binned / f"{name}_particles.csv").exists():
            volume = bin_volume(read_volume(work / f"{name}.mrc"))
            write_volume(binned / f"{name}.mrc", volume, VOXEL_SIZE * 2)
            table = particle_csv.read(work / f"{name}_particles.csv").particles
            particle_csv.write(
                binned / f"{name}_particles.csv", dataclasses.replace(table, xyz=bin_positions(table.xyz))
            )
    if not (binned / "classes.json").exists():
        masks = {shape.name: shape.mask for shape in shrec_shapes(VOXEL_SIZE * 2, shrec_dir)}
        for c in classes:
            write_volume(binned / c["mask"], masks[c["name"]].astype(np.int8), VOXEL_SIZE * 2)
        binned_classes = [{**c, "radius_voxels": c["radius_voxels"] / 2} for c in classes]
        (binned / "classes.json").write_text(json.dumps(binned_classes, indent=1))
    return binned


def build_targets(
    work: Path, names: list[str], classes: list[dict], kind: str, voxel_size: float
) -> list[Path]:
    """Label map per training tomogram: rotated shape masks or balls of the class radius."""
    from deepfinder.core.io import read_volume, write_volume
    from deepfinder.core.targets import shape_targets, sphere_targets

    paths = []
    for name in names:
        path = work / f"{name}_targets_{kind}.mrc"
        if not path.exists():
            shape = read_volume(work / f"{name}.mrc").shape
            table = particle_csv.read(work / f"{name}_particles.csv").particles
            if kind == "shapes":
                masks = {c["id"]: np.asarray(read_volume(work / c["mask"])) > 0 for c in classes}
                labels = shape_targets(shape, table, masks)
            else:
                labels = sphere_targets(shape, table, {c["id"]: c["radius_voxels"] for c in classes})
            write_volume(path, labels, voxel_size)
        paths.append(path)
    return paths


def train_with_budget(
    work: Path,
    names: list[str],
    targets: list[Path],
    classes: list[dict],
    kind: str,
    args,
    model_dir: Path,
    voxel_size: float,
) -> dict:
    """Train on the tomograms ``names`` of ``work`` (``voxel_size`` A/voxel) for ``args.steps``
    steps (``args.steps // args.steps_per_epoch`` epochs, the step size decaying over all of them),
    or until the optional wall-clock cap; returns the model (in ``model_dir``) and times.

    With ``args.resume`` a training stopped by the cap (or a crash) goes on from its last epoch, and
    the times reported are those of all its runs (kept in the model folder's ``times.json``)."""
    from deepfinder.core.checkpoints import last_checkpoint
    from deepfinder.core.settings import TrainingSettings
    from deepfinder.core.train import train

    out_dir = model_dir / f"model_{run_name(kind, args)}"
    epochs = max(args.steps // args.steps_per_epoch, 1)
    wall_budget = None if args.train_wall_minutes is None else 60.0 * args.train_wall_minutes
    epoch_wall, stopped_by = [], []
    times_file = out_dir / "times.json"
    resumed = args.resume and times_file.exists()
    earlier = json.loads(times_file.read_text()) if resumed else {"cpu": 0.0, "wall": 0.0}

    def times() -> dict:
        """CPU and wall seconds of the training so far, over all its runs."""
        return {
            "cpu": earlier["cpu"] + cpu_seconds() - cpu,
            "wall": earlier["wall"] + time.perf_counter() - started,
        }

    def report_and_cap(epoch: int, row: dict) -> None:
        elapsed = time.perf_counter() - started
        epoch_wall.append(elapsed - sum(epoch_wall))
        so_far = times()
        times_file.write_text(json.dumps(so_far))
        print(
            f"[budget] epoch {epoch} of {epochs}: {epoch * args.steps_per_epoch} steps, "
            f"{so_far['cpu'] / 60:.1f} CPU-min, {so_far['wall'] / 60:.1f} wall-min",
            flush=True,
        )
        # Stop before an epoch that would overrun the cap (the last epoch's cost as the estimate).
        if wall_budget is not None and elapsed + epoch_wall[-1] > wall_budget:
            stopped_by.append("wall-clock cap")
            raise BudgetSpent

    settings = TrainingSettings(
        patch_size=args.patch,
        batch_size=args.batch,
        epochs=epochs,
        steps_per_epoch=args.steps_per_epoch,
        validation_steps=args.validation_steps,
        loss=args.loss,
        learning_rate=args.learning_rate,
        final_learning_rate=args.final_learning_rate or None,
        shift_voxels=args.shift,
        rotations=args.rotations,
        added_noise=args.added_noise,
        binning=2 if args.binning_in_training else 1,
        seed=args.seed,
        precision=args.precision,
    )
    started, cpu = time.perf_counter(), cpu_seconds()
    try:
        train(
            [work / f"{name}.mrc" for name in names],
            targets,
            [particle_csv.read(work / f"{name}_particles.csv").particles for name in names],
            out_dir,
            len(classes) + 1,
            settings,
            validation_fraction=0.05,
            class_names=["background"] + [c["name"] for c in classes],
            voxel_size=voxel_size,
            initial_weights=args.initial_weights,
            resume=args.resume,
            on_epoch_end=report_and_cap,
        )
    except BudgetSpent:
        pass
    history = json.loads((out_dir / "history.json").read_text())
    best = json.loads((out_dir / "best.json").read_text())
    # The last epoch's model, not the engine's best-by-validation one: the loss is still falling at
    # these budgets, and the voxel F1 of the validation patches stays ~0 for many epochs, so "best"
    # would be an arbitrary early epoch.
    return {
        "weights": last_checkpoint(out_dir),
        **times(),
        "epochs": len(history),
        "best_epoch": best["best_epoch"],
        "steps": len(history) * args.steps_per_epoch,
        "history": history,
        "stopped_by": stopped_by[0] if stopped_by else "step budget",
    }


def run_name(kind: str, args) -> str:
    """Names the model folder and output files of one run."""
    return f"{kind}_{args.loss}" + (f"_{args.name}" if args.name else "")


def segment_and_score(
    work: Path,
    data: Path,
    name: str,
    weights: Path,
    classes: list[dict],
    data_classes: list[dict],
    tag: str,
    precision: str = "auto",
    crop_voxels: int = 4,
    average_rotations: bool = False,
    match_spectrum: bool = False,
    coarse_weights: Path | None = None,
) -> dict:
    """Segment held-out tomogram ``name`` of ``data`` (``work`` or its 2x-binned copy), cluster,
    match with both rules against the truth in ``work``; returns tables, confusion and times."""
    from deepfinder.core.io import read_volume
    from deepfinder.core.segment import segment_tomogram, unbin_positions
    from deepfinder.core.settings import SegmentationSettings

    binned = data != work
    started, cpu = time.perf_counter(), cpu_seconds()
    segmented = segment_tomogram(
        data / f"{name}.mrc",
        weights,
        data / f"{name}_pred_{tag}.mrc",
        data / f"{name}_scores_{tag}.mrc",
        SegmentationSettings(
            precision=precision,
            crop_voxels=crop_voxels,
            average_rotations=average_rotations,
            match_spectrum=match_spectrum,
        ),
        coarse_weights_path=coarse_weights,
    )
    segment_times = (time.perf_counter() - started, cpu_seconds() - cpu)

    started, cpu = time.perf_counter(), cpu_seconds()
    label_map = np.asarray(read_volume(segmented["labels"], mmap=False)).astype(np.uint8)
    score_maps = {k: np.asarray(read_volume(path, mmap=False)) for k, path in segmented["scores"].items()}
    # The score maps (one per class, 8 segmentations per model) would fill the disk over many runs.
    for path in segmented["scores"].values():
        path.unlink()
    found = cluster(label_map, data_classes, name, score_maps)
    if binned:
        found = dataclasses.replace(found, xyz=unbin_positions(found.xyz))
    particle_csv.write(work / f"{name}_found_{tag}.csv", found)
    cluster_times = (time.perf_counter() - started, cpu_seconds() - cpu)

    if not binned:
        save_slice_png(work, name, segmented["labels"], tag)
    return {
        **score(work, name, found, classes),
        "segment": segment_times,
        "cluster": cluster_times,
        "label_map": label_map,
    }


def print_scored(title: str, scored: dict, classes: list[dict]) -> None:
    """Both rules' tables, the class confusion and the times of one segmentation of a held-out tomogram."""
    from deepfinder.core.evaluate import format_confusion, format_table

    print(f"\n{title}, occupancy rule:")
    print(format_table(scored["occupancy"]))
    print("\nDistance rule (tolerance = class radius):")
    print(format_table(scored["distance"]))
    print("\nDetections by the class of the particle they lie on:")
    names = {c["id"]: c["name"] for c in classes}
    print(format_confusion(np.arange(len(scored["confusion"])), np.array(scored["confusion"]), names))
    print(
        f"Segmentation {scored['segment'][0]:.0f} s wall, {scored['segment'][1]:.0f} s CPU; "
        f"clustering {scored['cluster'][0]:.0f} s wall, {scored['cluster'][1]:.0f} s CPU"
    )


def score_true_labels(work: Path, name: str, classes: list[dict]) -> dict:
    """Clustering and matching applied to the simulator's true label map: the pipeline's ceiling."""
    from deepfinder.core.io import read_volume

    label_map = np.asarray(read_volume(work / f"{name}_labels.mrc", mmap=False)).astype(np.uint8)
    return score(work, name, cluster(label_map, classes, name), classes)


def cluster(label_map: np.ndarray, classes: list[dict], name: str, score_maps: dict | None = None):
    """Particles of a label map of held-out tomogram ``name``: class radii, fixed minimum cluster size."""
    from deepfinder.core.cluster import ball_volume, find_clusters

    radius = {c["id"]: c["radius_voxels"] for c in classes}
    min_size = {k: int(MIN_CLUSTER_FRACTION * ball_volume(r)) for k, r in radius.items()}
    return find_clusters(label_map, radius, min_size, score_maps, tomo=name).particles


def score(work: Path, name: str, found, classes: list[dict]) -> dict:
    """Particles found in held-out tomogram ``name`` against its truth: occupancy rule, distance rule
    (tolerance = class radius), each with an overall row, and the class confusion by occupancy
    (``counts[i][j]``: detections of class i on a particle of class j, 0 = background)."""
    from deepfinder.core.evaluate import (
        ClassScores,
        confusion_by_occupancy,
        match_by_distance,
        match_by_occupancy,
        precision_recall_f1,
    )
    from deepfinder.core.io import read_volume

    reference = particle_csv.read(work / f"{name}_particles.csv").particles
    occupancy = np.asarray(read_volume(work / f"{name}_occupancy.mrc", mmap=False))
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
    tp = sum(row.true_positives for row in by_distance)
    n_found = sum(row.n_detected for row in by_distance)
    n_reference = sum(row.n_reference for row in by_distance)
    # Distance matching is one-to-one, so true positives are also the reference particles found.
    by_distance.append(
        ClassScores(
            None,
            "all",
            n_found,
            n_reference,
            tp,
            tp / n_found if n_found else np.nan,
            tp / n_reference if n_reference else np.nan,
            2 * tp / (n_found + n_reference) if n_found + n_reference else np.nan,
        )
    )
    ids, counts = confusion_by_occupancy(found, occupancy, reference)
    # Every class in every table (ids 0..n), so that tables of several runs add up.
    confusion = np.zeros((len(classes) + 1,) * 2, dtype=int)
    confusion[np.ix_(ids, ids)] = counts
    return {
        "occupancy": precision_recall_f1(match_by_occupancy(found, occupancy, reference), names),
        "distance": by_distance,
        "confusion": confusion.tolist(),
    }


def score_record(scored: dict) -> dict:
    """The rows of both rules and the confusion of a :func:`score` result, as the report holds them."""
    return {
        "occupancy": [dataclasses.asdict(row) for row in scored["occupancy"]],
        "distance": [dataclasses.asdict(row) for row in scored["distance"]],
        "confusion": scored["confusion"],
    }


def save_slice_png(work: Path, name: str, labels_path: Path, tag: str) -> Path:
    """Middle z-slice of held-out tomogram ``name``, its true label map and the predicted one."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepfinder.core.io import read_volume

    tomogram = read_volume(work / f"{name}.mrc")
    z = tomogram.shape[0] // 2
    panels = [
        ("tomogram", np.asarray(tomogram[z]), "gray"),
        ("truth", np.asarray(read_volume(work / f"{name}_labels.mrc")[z]), "tab20"),
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
    path = work / f"{name}_slice_{tag}.png"
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def markdown_rows(occupancy_rows, distance_rows) -> list[str]:
    """Markdown table: per class (and overall) precision / recall / F1 under both rules."""
    distance = {row.class_id: row for row in distance_rows}
    lines = [
        "| Class | Reference | Found | Occupancy rule P / R / F1 | Distance rule P / R / F1 |",
        "|---|---|---|---|---|",
    ]
    for row in occupancy_rows:
        other = distance.get(row.class_id)
        text = (
            "- / - / -" if other is None else f"{other.precision:.2f} / {other.recall:.2f} / {other.f1:.2f}"
        )
        lines.append(
            f"| {row.name} | {row.n_reference} | {row.n_detected} | "
            f"{row.precision:.2f} / {row.recall:.2f} / {row.f1:.2f} | {text} |"
        )
    return lines


def parse_arguments() -> argparse.Namespace:
    from deepfinder.core.settings import LOSSES, PRECISIONS, ROTATIONS, TrainingSettings, default_of

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--work",
        type=Path,
        default=Path(tempfile.gettempdir()) / "deepfinder_bench_shrec",
        help="folder for simulated data, models and outputs (reused)",
    )
    parser.add_argument("--n-train", type=int, default=3, help="training tomograms (layouts 0..n-1)")
    parser.add_argument(
        "--train-settings",
        nargs="+",
        choices=SETTINGS,
        default=["bench"],
        help="imaging settings the training layouts are simulated under: one, or both (twice the "
        "training tomograms, the same steps)",
    )
    parser.add_argument(
        "--held-out",
        type=int,
        nargs="+",
        default=[7, 8],
        help="SHREC'19 layouts to score on (0-8, none of the training ones), each simulated under "
        f"the presets {' and '.join(SETTINGS)}",
    )
    parser.add_argument(
        "--held-out-settings",
        nargs="+",
        choices=SETTINGS,
        default=list(SETTINGS),
        help="imaging settings of the held-out tomograms to score (all are simulated)",
    )
    parser.add_argument(
        "--data-seed",
        type=int,
        default=0,
        help="seed of the simulated data (runs with other --seed values share it)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="training seed (with --model: the model's, for the report)"
    )
    parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="simulate, bin and build the label maps of --targets, then stop",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=15000,
        help="training budget, steps of --batch patches (the same on every machine; the report gives "
        "the CPU time it took and the CPU model)",
    )
    parser.add_argument(
        "--train-wall-minutes",
        type=float,
        default=None,
        help="also stop training after this many wall-clock minutes (shared machines)",
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="go on with the training of the same --name from its last epoch (one stopped by "
        "--train-wall-minutes), the times summed over its runs",
    )
    parser.add_argument("--targets", choices=("shapes", "spheres", "both"), default="shapes")
    parser.add_argument("--loss", choices=LOSSES, default="dice_cross_entropy")
    # 1e-3 with cross-entropy alone drove the softmax to all-background within 40 steps here (SNR 0.1).
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument(
        "--final-learning-rate",
        type=float,
        default=1e-4,
        help="step size decays geometrically to this by the last epoch (0: constant)",
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
        "--steps-per-epoch",
        type=int,
        default=100,
        help="training steps per epoch (history, checkpoints and the wall-clock cap work per epoch)",
    )
    parser.add_argument("--validation-steps", type=int, default=2)
    parser.add_argument("--shift", type=int, default=4, help="patch-centre jitter, voxels")
    parser.add_argument(
        "--initial-weights",
        type=Path,
        help="start training from this model (*.weights.h5 of the same classes, e.g. the coarse "
        "model's) instead of random weights",
    )
    parser.add_argument(
        "--rotations",
        choices=ROTATIONS,
        default=default_of(TrainingSettings, "rotations"),
        help="training patches' rotations (the engine's default)",
    )
    parser.add_argument(
        "--added-noise",
        type=float,
        default=default_of(TrainingSettings, "added_noise"),
        help="largest std of the noise added to a training patch, in the tomogram's (the engine's default)",
    )
    parser.add_argument(
        "--bin",
        type=int,
        choices=(1, 2),
        default=2,
        help="2: train and segment the tomograms binned by 2 (means of 2^3 voxels, "
        "20 A/voxel); particles found are scored at the full size",
    )
    parser.add_argument(
        "--binning-in-training",
        action="store_true",
        help="with --bin 2: train on the full-size tomograms and label maps, binned by the engine "
        "(train --binning 2: a class where it holds half of 2^3 voxels), instead of the binned "
        "copies and label maps made at 20 A/voxel",
    )
    parser.add_argument(
        "--name", default="", help="suffix of this run's model folder and output files (parallel runs)"
    )
    parser.add_argument(
        "--crops",
        type=int,
        nargs="+",
        default=[4],
        help="segment with each of these tile crops (voxels); the first is reported, "
        "the others compared with it on the first held-out tomogram (34 makes tiling exact)",
    )
    parser.add_argument(
        "--modes",
        nargs="+",
        choices=("plain", "rotations"),
        default=["plain", "rotations"],
        help="segment each held-out tomogram plainly and/or with the scores averaged over its four "
        "rotations (4x the network time)",
    )
    parser.add_argument(
        "--match-spectrum",
        action="store_true",
        help="filter each held-out tomogram to the training tomograms' amplitude spectrum first "
        "(the engine's match_spectrum)",
    )
    parser.add_argument(
        "--model",
        type=Path,
        default=None,
        help="score this trained model (*.weights.h5) instead of training one",
    )
    parser.add_argument(
        "--coarse-model",
        type=Path,
        default=None,
        help="with --bin 1: segment with this model trained on the 2x-binned tomograms as the coarse model "
        "(its scores averaged with the model's)",
    )
    parser.add_argument(
        "--ceiling",
        action="store_true",
        help="also score the true label maps of the held-out tomograms (pipeline ceiling)",
    )
    add_shrec_dir_option(parser)
    args = parser.parse_args()
    if not 1 <= args.n_train < SHREC19_LAYOUTS:
        parser.error(
            f"--n-train {args.n_train}: give 1 to {SHREC19_LAYOUTS - 1} (one layout must stay held out)"
        )
    outside = [layout for layout in args.held_out if not 0 <= layout < SHREC19_LAYOUTS]
    if outside:
        parser.error(f"--held-out {outside}: SHREC'19 has layouts 0-{SHREC19_LAYOUTS - 1}")
    training = [layout for layout in args.held_out if layout < args.n_train]
    if training:
        parser.error(
            f"--held-out {training}: --n-train {args.n_train} trains on layouts 0-{args.n_train - 1}; "
            f"hold out layouts {args.n_train}-{SHREC19_LAYOUTS - 1} or lower --n-train"
        )
    if len(set(args.held_out)) != len(args.held_out):
        parser.error(f"--held-out {args.held_out}: give each layout once")
    if args.binning_in_training and args.bin != 2:
        parser.error("--binning-in-training: give --bin 2 (the model segments the binned tomograms)")
    if args.coarse_model is not None and args.bin != 1:
        parser.error("--coarse-model: give --bin 1 (the model segments the full-size tomograms)")
    return args


def main() -> int:
    from deepfinder.core.model import resolve_precision

    args = parse_arguments()
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
    kinds = ("shapes", "spheres") if args.targets == "both" else (args.targets,)
    with data_lock(work):
        check_data_seed(work, args.data_seed)
        simulated = simulate(
            work, args.n_train, args.held_out, args.data_seed, shrec_dir, tuple(args.train_settings)
        )
        held_out = [
            tomogram for tomogram in simulated["held_out"] if tomogram["setting"] in args.held_out_settings
        ]
        classes = json.loads((work / "classes.json").read_text())
        data, data_classes = work, classes
        if args.bin > 1:
            names = simulated["train"] + [tomogram["name"] for tomogram in held_out]
            data = bin_data(work, names, classes, shrec_dir)
            data_classes = json.loads((data / "classes.json").read_text())
        # The tomograms, classes and label maps training reads (the full-size ones when it bins them).
        source, source_classes, source_voxel_size = (
            (work, classes, VOXEL_SIZE)
            if args.binning_in_training
            else (data, data_classes, VOXEL_SIZE * args.bin)
        )
        targets = {}
        if args.model is None:
            for kind in kinds:
                targets[kind] = build_targets(
                    source, simulated["train"], source_classes, kind, source_voxel_size
                )
    print(
        f"Simulation: {simulated['wall']:.0f} s wall, {simulated['cpu']:.0f} s CPU "
        f"(0 when reused from {work})"
    )
    if args.prepare_only:
        print(f"Data prepared in {work}")
        return 0
    if args.ceiling:
        for tomogram in held_out:
            ceiling = score_true_labels(work, tomogram["name"], classes)
            print(f"\nCeiling of {tomogram['name']}: clustering and matching of the true label map")
            print("\n".join(markdown_rows(ceiling["occupancy"], ceiling["distance"])))
    report = []
    for kind in kinds:
        if args.model is None:
            trained = train_with_budget(
                source,
                simulated["train"],
                targets[kind],
                source_classes,
                kind,
                args,
                model_dir=data,
                voxel_size=source_voxel_size,
            )
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
        entry = {
            "targets": kind,
            "name": args.name,
            "seed": args.seed,
            "data_seed": args.data_seed,
            "arguments": vars(args),
            "train": {k: v for k, v in trained.items() if k != "history"},
            "val_f1_per_epoch": [row["val_mean_f1"] for row in trained["history"]],
            "scores": [],
        }
        for index, tomogram in enumerate(held_out):
            for mode in args.modes:
                tag = f"{run_name(kind, args)}_crop{args.crops[0]}" + (
                    "_rotations" if mode == "rotations" else ""
                )
                scored = segment_and_score(
                    work,
                    data,
                    tomogram["name"],
                    trained["weights"],
                    classes,
                    data_classes,
                    tag,
                    args.precision,
                    args.crops[0],
                    average_rotations=mode == "rotations",
                    match_spectrum=args.match_spectrum,
                    coarse_weights=args.coarse_model,
                )
                how = "scores averaged over 4 rotations" if mode == "rotations" else "plain"
                print_scored(
                    f"Held-out SHREC'19 layout {tomogram['layout']}, {tomogram['setting']} imaging, "
                    f"{kind} targets, tiles cropped by {args.crops[0]} voxels, {how}",
                    scored,
                    classes,
                )
                entry["scores"].append(
                    {
                        **tomogram,
                        "mode": mode,
                        "crop": args.crops[0],
                        "segment": scored["segment"],
                        "cluster": scored["cluster"],
                        **score_record(scored),
                        "table": markdown_rows(scored["occupancy"], scored["distance"]),
                    }
                )
                if index == 0 and mode == "plain":
                    compare_crops(
                        work,
                        data,
                        tomogram["name"],
                        trained["weights"],
                        classes,
                        data_classes,
                        kind,
                        args,
                        scored,
                    )
        report.append(entry)
    suffix = ("_" + args.name if args.name else "") + ("_rescored" if args.model is not None else "")
    report_path = work / f"report{suffix}.json"
    report_path.write_text(json.dumps(report, indent=1, default=str))
    print(f"\nReport: {report_path}")
    print_summary(report_scores(report, report_path.stem))
    return 0


def compare_crops(
    work: Path, data: Path, name: str, weights: Path, classes, data_classes, kind: str, args, first: dict
) -> None:
    """Segment held-out tomogram ``name`` with the other ``--crops`` and count the labels that differ."""
    for crop in args.crops[1:]:
        scored = segment_and_score(
            work,
            data,
            name,
            weights,
            classes,
            data_classes,
            f"{run_name(kind, args)}_crop{crop}",
            args.precision,
            crop,
            match_spectrum=args.match_spectrum,
            coarse_weights=args.coarse_model,
        )
        print_scored(f"{name}, {kind} targets, tiles cropped by {crop} voxels", scored, classes)
        differ = first["label_map"] != scored["label_map"]
        particle = (first["label_map"] > 0) | (scored["label_map"] > 0)
        print(
            f"Crop {args.crops[0]} vs crop {crop}: labels differ on {differ.mean():.4%} of all "
            f"voxels, {differ[particle].mean():.2%} of the voxels either calls a particle"
        )


if __name__ == "__main__":
    from deepfinder.core.logs import engine_log

    with engine_log():
        status = main()
    sys.exit(status)
