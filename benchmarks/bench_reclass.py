"""Second-stage classifier: does a small 3D CNN on a box around each pick name the class better
than the U-net's label map? (It does not: benchmarks/RESULTS.md, *What was tried and why it lost*.)

    python benchmarks/bench_reclass.py --data DIR [--work DIR] [--bin 2] [--box 16] [--jitter 1]
                                       [--train-minutes 8] [--background 600] [--seed 0]
                                       [--model CLASSIFIER.weights.h5] [--picks FOUND.csv ...]
                                       [--initial-weights CLASSIFIER.weights.h5]

``--data`` is a bench_shrec work folder (training tomograms ``tomo_000..`` with particle tables and
occupancy maps, the held-out tomogram ``--held-out`` with its truth; ``bin2/`` for ``--bin 2``); it is only
read. Cuts boxes (default: 16^3 of the 2x-binned tomograms, 20 A/voxel) around every training
particle (plus ``--background`` boxes off every particle, class 0), holds out 5 % of each class
for validation, trains :func:`build_classifier` until ``--train-minutes`` of process CPU time are
spent (one-thread runs: pin with taskset and TF_NUM_INTRAOP_THREADS=1), then prints

- the accuracy and class confusion on the held-out tomogram's true positions (exact, and shifted
  by up to ``--jitter`` voxels per axis, as picks are);
- for each ``--picks`` table (bench_shrec's ``<held-out>_found_*.csv``, full-size voxels): the
  U-net's picks scored as they are and re-classed by the classifier (positions kept), with
  bench_shrec's ``score`` (occupancy and distance rules), per-class F1 before / after, with the
  background class dropping picks or not.

Writes the model, the box cache and the re-classed tables into ``--work``.

The boxes are normalised with their tomogram's statistics, as the U-net's patches. Training
augments each box with a shift of its centre (picks are off by a voxel or two) and the 180-degree
rotations about z, y and x that keep the missing wedge where it is
(``rotations.WEDGE_PRESERVING_ROTATIONS``); prediction averages the four rotations. The experiment
lost against the U-net's own class calls (benchmarks/RESULTS.md), so the classifier lives here and
not in the engine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from bench_shrec import cpu_seconds, score

from deepfinder.core.devices import import_keras
from deepfinder.core.normalize import normalize
from deepfinder.core.rotations import WEDGE_PRESERVING_ROTATIONS, rotate_180
from deepfinder.core.sampling import draw_rows
from deepfinder.core.tables import csv as particle_csv

VALIDATION_FRACTION = 0.05
# Background boxes are centred where no particle voxel lies within this many voxels (10 A).
BACKGROUND_CLEARANCE = 3


def cut_boxes(
    volume: np.ndarray, centres_zyx: np.ndarray, box_size: int, stats: tuple[float, float]
) -> np.ndarray:
    """Normalised cubes of edge ``box_size`` centred on ``centres_zyx`` (nearest voxel).

    Parameters
    ----------
    volume : (z, y, x) array
        Tomogram (memory-mapped is fine).
    centres_zyx : (n, 3) float array
        Box centres, voxels.
    box_size : int
        Box edge, voxels; an even edge puts the centre voxel at index ``box_size // 2``.
    stats : (mean, std)
        The tomogram's normalisation (:func:`deepfinder.core.normalize.tomogram_stats`).

    Returns
    -------
    (n, box_size, box_size, box_size) float32
        Where a box leaves the tomogram it holds 0 (the normalised mean).
    """
    centres = np.rint(np.asarray(centres_zyx, dtype=float)).astype(int).reshape(-1, 3)
    boxes = np.zeros((len(centres), box_size, box_size, box_size), dtype=np.float32)
    shape = np.array(volume.shape)
    for i, first in enumerate(centres - box_size // 2):
        low = np.maximum(first, 0)
        high = np.minimum(first + box_size, shape)
        if np.any(high <= low):
            continue
        inside = tuple(slice(a, b) for a, b in zip(low, high))
        placed = tuple(slice(a, b) for a, b in zip(low - first, high - first))
        boxes[(i,) + placed] = normalize(volume[inside], *stats)
    return boxes


def background_centres(
    occupancy: np.ndarray, n: int, clearance_voxels: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` random voxels (z, y, x) whose cube of half-edge ``clearance_voxels`` holds no
    occupied voxel (``occupancy`` > 0): centres of class-0 boxes, none near a particle, though
    such boxes still show the crowd around them."""
    found: list[np.ndarray] = []
    shape = np.array(occupancy.shape)
    while sum(len(f) for f in found) < n:
        candidates = rng.integers(clearance_voxels, shape - clearance_voxels, size=(4 * n, 3))
        free = np.array(
            [
                not np.any(
                    occupancy[tuple(slice(c - clearance_voxels, c + clearance_voxels + 1) for c in centre)]
                )
                for centre in candidates
            ]
        )
        found.append(candidates[free])
    return np.concatenate(found)[:n].astype(float)


def rotate_boxes(boxes: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Boxes (n, z, y, x) each turned by one wedge-preserving rotation: ``rotation[i]`` 0 keeps
    box i, 1-3 turn it by 180 degrees about z, y or x. In an even box the turn moves the
    centre voxel (index ``box_size // 2``) by one voxel along the reversed axes, less than the
    shifts training sees."""
    return np.stack([rotate_180(box, k - 1) for box, k in zip(boxes, rotation)])


def augmented_batch(
    padded_boxes: np.ndarray, rows: np.ndarray, box_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Boxes of edge ``box_size`` cut from ``padded_boxes[rows]`` (larger boxes around the same
    centres) at a random shift of up to their margin per axis, each turned by a random
    wedge-preserving rotation; (b, z, y, x, 1) float32."""
    margin = (padded_boxes.shape[1] - box_size) // 2
    shifts = rng.integers(0, 2 * margin + 1, size=(len(rows), 3))
    batch = np.empty((len(rows), box_size, box_size, box_size), dtype=np.float32)
    for i, (row, (z, y, x)) in enumerate(zip(rows, shifts)):
        batch[i] = padded_boxes[row, z : z + box_size, y : y + box_size, x : x + box_size]
    return rotate_boxes(batch, rng.integers(0, 1 + len(WEDGE_PRESERVING_ROTATIONS), len(rows)))[..., None]


def build_classifier(n_classes: int, box_size: int):
    """A small 3D CNN: three blocks of 3x3x3 convolutions (16, 32, 64 filters, batch
    normalisation, ReLU) each halving the box, then a dense layer of 128 and the class logits.

    Parameters
    ----------
    n_classes : int
        Output classes, background (class 0) included.
    box_size : int
        Input box edge, voxels (a multiple of 8).

    Returns
    -------
    keras.Model
        Input (batch, box, box, box, 1) float32; output (batch, n_classes) logits.
    """
    keras = import_keras()
    from keras import layers

    if box_size % 8:
        raise ValueError(f"The box edge must be a multiple of 8, got {box_size}")
    inputs = keras.Input(shape=(box_size, box_size, box_size, 1))
    x = inputs
    for filters in (16, 32, 64):
        for _ in range(1 if filters == 16 else 2):
            x = layers.Conv3D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
            # A short memory of batch statistics: training runs of a few hundred steps.
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling3D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu", kernel_initializer="he_normal")(x)
    logits = layers.Dense(n_classes)(x)
    return keras.Model(inputs, logits, name="deepfinder_box_classifier")


def train_classifier(
    model,
    padded_boxes: np.ndarray,
    labels: np.ndarray,
    box_size: int,
    *,
    steps: int,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    final_learning_rate: float = 1e-4,
    seed: int = 0,
    steps_per_epoch: int = 50,
    on_epoch_end: Callable[[int, float], bool] | None = None,
) -> list[float]:
    """Train ``model`` on augmented boxes (:func:`augmented_batch`), classes drawn in rounds
    (:func:`deepfinder.core.sampling.draw_rows`), the step size decaying geometrically from
    ``learning_rate`` to ``final_learning_rate`` over ``steps``.

    Parameters
    ----------
    model : keras.Model
        From :func:`build_classifier`, trained in place.
    padded_boxes : (n, B, B, B) float32
        Boxes around the training centres, ``B - box_size`` = twice the largest centre shift.
    labels : (n,) int array
        Class of each box (0 = background).
    box_size : int
    steps, batch_size, learning_rate, final_learning_rate, seed, steps_per_epoch
        The schedule; every ``steps_per_epoch`` steps ``on_epoch_end(epoch, mean loss)`` is
        called, and training stops early when it returns True.

    Returns
    -------
    list of float
        Mean training loss of each epoch.
    """
    keras = import_keras()
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    optimizer = keras.optimizers.Adam(learning_rate)
    loss_function = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_function(y, model(x, training=True))
        optimizer.apply_gradients(
            zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        )
        return loss

    decay = (final_learning_rate / learning_rate) ** (1 / max(steps - 1, 1))
    losses: list[float] = []
    epoch_losses: list[float] = []
    for i in range(steps):
        optimizer.learning_rate.assign(learning_rate * decay**i)
        rows = draw_rows(labels, batch_size, rng)
        epoch_losses.append(float(step(augmented_batch(padded_boxes, rows, box_size, rng), labels[rows])))
        if len(epoch_losses) == steps_per_epoch or i == steps - 1:
            losses.append(float(np.mean(epoch_losses)))
            epoch_losses = []
            if on_epoch_end is not None and on_epoch_end(len(losses), losses[-1]):
                break
    return losses


def classify_boxes(
    model, boxes: np.ndarray, average_rotations: bool = True, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities (n, n_classes) of boxes (n, z, y, x), optionally averaged over the
    four wedge-preserving rotations."""
    import_keras()
    import tensorflow as tf

    rotations = range(1 + len(WEDGE_PRESERVING_ROTATIONS)) if average_rotations else (0,)
    probabilities = np.zeros((len(boxes), int(model.output_shape[-1])))
    for start in range(0, len(boxes), batch_size):
        part = boxes[start : start + batch_size]
        for k in rotations:
            turned = rotate_boxes(part, np.full(len(part), k))[..., None]
            probabilities[start : start + batch_size] += tf.nn.softmax(model(turned, training=False)).numpy()
    return probabilities / len(rotations)


def to_binned(xyz: np.ndarray, factor: int) -> np.ndarray:
    """Full-size voxel positions -> positions in a tomogram binned ``factor`` times (inverse of
    ``segment.unbin_positions``)."""
    return (np.asarray(xyz, dtype=float) - (factor - 1) / 2) / factor


def training_boxes(data: Path, args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Padded boxes (edge box + 2 jitter) around the training particles and the background
    centres, their labels and tomogram index; cached in ``--work``."""
    from deepfinder.core.io import read_volume
    from deepfinder.core.normalize import tomogram_stats

    cache = args.work / f"boxes_bin{args.bin}_box{args.box}_jitter{args.jitter}_bg{args.background}.npz"
    if cache.exists():
        saved = np.load(cache)
        return saved["boxes"], saved["labels"], saved["tomo"]
    names = sorted(p.name[: -len("_particles.csv")] for p in data.glob("tomo_0*_particles.csv"))
    rng = np.random.default_rng(args.seed)
    boxes, labels, tomo = [], [], []
    for t, name in enumerate(names):
        volume = read_volume(source(data, args) / f"{name}.mrc")
        stats = tomogram_stats(volume)
        table = particle_csv.read(data / f"{name}_particles.csv").particles
        occupancy = np.asarray(read_volume(data / f"{name}_occupancy.mrc", mmap=False))
        off = background_centres(occupancy, args.background // len(names), BACKGROUND_CLEARANCE, rng)
        centres = np.concatenate([table.zyx, off])
        if args.bin > 1:
            centres = to_binned(centres[:, ::-1], args.bin)[:, ::-1]
        boxes.append(cut_boxes(volume, centres, args.box + 2 * args.jitter, stats))
        labels.append(np.concatenate([table.class_id, np.zeros(len(off), dtype=int)]))
        tomo.append(np.full(len(centres), t))
        print(f"{name}: {len(table)} particle boxes, {len(off)} background boxes", flush=True)
    boxes, labels, tomo = np.concatenate(boxes), np.concatenate(labels), np.concatenate(tomo)
    np.savez(cache, boxes=boxes, labels=labels, tomo=tomo)
    return boxes, labels, tomo


def source(data: Path, args) -> Path:
    """Folder of the tomograms the boxes are cut from."""
    return data / "bin2" if args.bin == 2 else data


def held_out_rows(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mask of ``VALIDATION_FRACTION`` of each class's rows."""
    held = np.zeros(len(labels), dtype=bool)
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        held[rng.choice(rows, max(1, int(round(VALIDATION_FRACTION * len(rows)))), replace=False)] = True
    return held


def train_with_budget(boxes, labels, args) -> tuple[object, dict]:
    """Probe the cost of a step, plan the steps the CPU budget holds, train; returns the model
    and the CPU and wall time spent (probe included)."""

    model = build_classifier(int(labels.max()) + 1, args.box)
    if args.initial_weights is not None:
        model.load_weights(args.initial_weights)
    budget = 60.0 * args.train_minutes
    started, cpu = time.perf_counter(), cpu_seconds()
    marks = []
    probe_steps = 20

    def mark(epoch: int, loss: float) -> bool:
        marks.append(cpu_seconds())
        return False

    train_classifier(
        model,
        boxes,
        labels,
        args.box,
        steps=probe_steps,
        batch_size=args.batch,
        final_learning_rate=1e-3,
        seed=args.seed + 1000,
        steps_per_epoch=10,
        on_epoch_end=mark,
    )
    step_cpu = (marks[1] - marks[0]) / 10
    steps = max(int((budget - (cpu_seconds() - cpu)) / step_cpu), 1)
    print(f"[budget] {step_cpu:.2f} CPU-s per step of {args.batch} boxes: {steps} steps planned", flush=True)

    def report(epoch: int, loss: float) -> bool:
        used = cpu_seconds() - cpu
        print(
            f"[budget] epoch {epoch}: loss {loss:.3f}, {used / 60:.1f} CPU-min, "
            f"{(time.perf_counter() - started) / 60:.1f} wall-min",
            flush=True,
        )
        return used > budget

    losses = train_classifier(
        model,
        boxes,
        labels,
        args.box,
        steps=steps,
        batch_size=args.batch,
        seed=args.seed,
        steps_per_epoch=50,
        on_epoch_end=report,
    )
    return model, {
        "cpu": cpu_seconds() - cpu,
        "wall": time.perf_counter() - started,
        "steps": probe_steps + steps,
        "step_cpu": step_cpu,
        "losses": losses,
    }


def confusion_text(truth: np.ndarray, predicted: np.ndarray, names: dict[int, str]) -> str:
    """Rows: true class; columns: predicted class; last column: recall."""
    ids = sorted(names)
    width = max(len(n) for n in names.values()) + 1
    lines = [" " * width + "".join(f"{names[k]:>{width}}" for k in ids) + f"{'recall':>{width}}"]
    for t in ids:
        row = [np.count_nonzero((truth == t) & (predicted == p)) for p in ids]
        total = max(np.count_nonzero(truth == t), 1)
        lines.append(
            f"{names[t]:<{width}}"
            + "".join(f"{c:>{width}}" for c in row)
            + f"{row[ids.index(t)] / total:>{width}.2f}"
        )
    return "\n".join(lines)


def held_out_boxes(data: Path, centres_xyz: np.ndarray, args) -> np.ndarray:
    """Boxes of the held-out tomogram centred on full-size positions (x, y, z voxels)."""
    from deepfinder.core.io import read_volume
    from deepfinder.core.normalize import tomogram_stats

    volume = read_volume(source(data, args) / f"{args.held_out}.mrc")
    centres = to_binned(centres_xyz, args.bin) if args.bin > 1 else np.asarray(centres_xyz, dtype=float)
    return cut_boxes(volume, centres[:, ::-1], args.box, tomogram_stats(volume))


def accuracy_on_truth(model, data: Path, classes: list[dict], args) -> dict:
    """Classes called at the held-out tomogram's true positions, exact and shifted, scored as
    picks with bench_shrec's rules: the classifier's F1 with perfect localisation."""

    names = {0: "background", **{c["id"]: c["name"] for c in classes}}
    truth = particle_csv.read(data / f"{args.held_out}_particles.csv").particles
    rng = np.random.default_rng(args.seed + 7)
    result = {}
    for label, shift in (("exact", 0), (f"shifted by up to {args.jitter}", args.jitter)):
        # Shifts in voxels of the boxes' sampling, positions in full-size voxels.
        xyz = truth.xyz + rng.integers(-shift, shift + 1, size=truth.xyz.shape) * args.bin
        started, cpu = time.perf_counter(), cpu_seconds()
        probabilities = classify_boxes(model, held_out_boxes(data, xyz, args))
        elapsed = (time.perf_counter() - started, cpu_seconds() - cpu)
        np.save(args.work / f"truth_probabilities_{shift}_{args.name}.npy", probabilities)
        picks = dataclasses.replace(truth, xyz=xyz)
        variants = reclassed(picks, probabilities)
        scored = {name: score(data, args.held_out, table, classes) for name, table in variants.items()}
        called = np.argmax(probabilities, axis=1)
        particle = 1 + np.argmax(probabilities[:, 1:], axis=1)
        result[label] = {
            "accuracy": float(np.mean(particle == truth.class_id)),
            "background_called": float(np.mean(called == 0)),
            "seconds": elapsed,
            "table": f1_table(scored),
        }
        print(
            f"\nHeld-out true positions ({label}): accuracy {result[label]['accuracy']:.3f} "
            f"(argmax over particle classes), called background {result[label]['background_called']:.3f}; "
            f"{elapsed[0]:.0f} s wall, {elapsed[1]:.0f} s CPU for {len(xyz)} boxes x 4 rotations"
        )
        print(confusion_text(truth.class_id, np.where(called == 0, 0, particle), names))
        print("Per-class F1 of the true positions so named, occupancy rule (distance rule):")
        print(result[label]["table"])
    return result


def reclassed(found, probabilities: np.ndarray) -> dict:
    """The picks ``found`` named by the classifier (the most probable particle class, its
    probability as score), and the same without the picks it calls background."""
    called = np.argmax(probabilities, axis=1)
    particle = 1 + np.argmax(probabilities[:, 1:], axis=1)
    named = dataclasses.replace(
        found, class_id=particle, score=probabilities[np.arange(len(found)), particle]
    )
    return {"re-classed": named, "re-classed, background dropped": named.select(called != 0)}


def unet_accuracy_on_picks(found, data: Path, held_out: str) -> tuple[float, int]:
    """Fraction of the picks lying on a particle whose class is that particle's, and their number."""
    from deepfinder.core.evaluate import particles_under
    from deepfinder.core.io import read_volume

    reference = particle_csv.read(data / f"{held_out}_particles.csv").particles
    occupancy = np.asarray(read_volume(data / f"{held_out}_occupancy.mrc", mmap=False))
    particle = particles_under(found, occupancy, reference)
    on = particle >= 0
    return float(np.mean(found.class_id[on] == reference.class_id[particle[on]])), int(on.sum())


def reclass_picks(model, picks: Path, data: Path, classes: list[dict], args) -> dict:
    """Score the U-net's picks, then the same positions re-classed, with and without dropping the
    picks the classifier calls background."""
    from deepfinder.core.evaluate import format_confusion, format_table

    found = particle_csv.read(picks).particles
    probabilities = classify_boxes(model, held_out_boxes(data, found.xyz, args))
    variants = {"U-net": found, **reclassed(found, probabilities)}
    unet = unet_probabilities(picks, data, args.held_out, found, len(classes) + 1)
    if unet is not None:
        # Both stages' evidence: the product of the U-net's scores at the pick and the classifier's.
        variants.update({f"U-net x {k}": v for k, v in reclassed(found, unet * probabilities).items()})
    scored = {}
    for label, table in variants.items():
        scored[label] = score(data, args.held_out, table, classes)
        accuracy, n_on = unet_accuracy_on_picks(table, data, args.held_out)
        scored[label]["accuracy_on_particles"] = (accuracy, n_on)
        print(
            f"\n{picks.name}, {label}: {len(table)} picks, {n_on} on a particle, class right for "
            f"{accuracy:.3f} of those; occupancy rule:"
        )
        print(format_table(scored[label]["occupancy"]))
        counts = np.array(scored[label]["confusion"])
        print(format_confusion(np.arange(len(counts)), counts, {c["id"]: c["name"] for c in classes}))
        stem = picks.name[: -len(".csv")]
        tag = label.replace(", ", "_").replace(" ", "_").replace("-", "")
        particle_csv.write(args.work / f"{stem}_{tag}_{args.name}.csv", table)
    print(f"\n{picks.name}: per-class F1, U-net / re-classed / re-classed with background dropped")
    print(f1_table(scored))
    return scored


def unet_probabilities(picks: Path, data: Path, held_out: str, found, n_classes: int) -> np.ndarray | None:
    """The U-net's class scores (n, n_classes) at the picks, read from the score maps bench_shrec
    wrote beside the binned held-out tomogram; None when they are not there."""
    from deepfinder.core.io import read_volume
    from deepfinder.core.segment import score_map_paths

    tag = picks.name[len(f"{held_out}_found_") : -len(".csv")]
    paths = score_map_paths(data / "bin2" / f"{held_out}_scores_{tag}.mrc", n_classes)
    if not all(path.exists() for path in paths.values()):
        return None
    index = np.rint(to_binned(found.xyz, 2)[:, ::-1]).astype(int)
    scores = np.full((len(found), n_classes), 1e-6)
    for k, path in paths.items():
        volume = read_volume(path)
        inside = np.clip(index, 0, np.array(volume.shape) - 1)
        scores[:, k] = np.asarray(volume)[tuple(inside.T)]
    scores[:, 0] = np.clip(1 - scores[:, 1:].sum(axis=1), 1e-6, None)
    return scores


def f1_table(scored: dict) -> str:
    """Markdown: one row per class, F1 of each variant under the occupancy rule (distance rule
    in brackets)."""
    labels = list(scored)
    first = scored[labels[0]]["occupancy"]
    lines = ["| Class | " + " | ".join(labels) + " |", "|---" * (1 + len(labels)) + "|"]
    for i, row in enumerate(first):
        cells = []
        for label in labels:
            occ = scored[label]["occupancy"][i]
            dist = {r.class_id: r for r in scored[label]["distance"]}.get(occ.class_id)
            cells.append(f"{occ.f1:.2f}" + (f" ({dist.f1:.2f})" if dist is not None else ""))
        lines.append(f"| {row.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="bench_shrec work folder (read only)")
    parser.add_argument(
        "--held-out",
        default="heldout8_bench",
        help="file stem of the held-out tomogram in --data (bench_shrec's held_out_name; tomo_test before)",
    )
    parser.add_argument("--work", type=Path, default=Path("/tmp/deepfinder_bench_reclass"))
    parser.add_argument(
        "--bin", type=int, choices=(1, 2), default=2, help="cut boxes at 10 A (1) or 20 A (2)"
    )
    parser.add_argument("--box", type=int, default=16, help="box edge, voxels of the chosen sampling")
    parser.add_argument("--jitter", type=int, default=1, help="largest shift of a box centre, voxels")
    parser.add_argument("--background", type=int, default=600, help="background boxes (class 0), 0: none")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--train-minutes", type=float, default=8.0, help="training budget, CPU minutes")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", type=Path, default=None, help="a trained classifier: skip training")
    parser.add_argument(
        "--initial-weights",
        type=Path,
        default=None,
        help="train on from this classifier (a new step-size decay over the budget)",
    )
    parser.add_argument("--picks", type=Path, nargs="*", default=[], help="U-net picks to re-class")
    parser.add_argument("--name", default="run", help="names this run's files in --work")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)

    classes = json.loads((args.data / "classes.json").read_text())
    names = {0: "background", **{c["id"]: c["name"] for c in classes}}
    started, cpu = time.perf_counter(), cpu_seconds()
    boxes, labels, _ = training_boxes(args.data, args)
    print(
        f"Boxes: {len(boxes)} of {boxes.shape[1]}^3, {time.perf_counter() - started:.0f} s wall, "
        f"{cpu_seconds() - cpu:.0f} s CPU (0 when cached)",
        flush=True,
    )
    held = held_out_rows(labels, np.random.default_rng(args.seed))
    weights = args.work / f"classifier_{args.name}.weights.h5"
    report: dict = {"args": {k: str(v) for k, v in vars(args).items()}}
    if args.model is None:
        model, trained = train_with_budget(boxes[~held], labels[~held], args)
        model.save_weights(weights)
        report["train"] = trained
        print(
            f"Training: {trained['steps']} steps, {trained['cpu'] / 60:.1f} CPU-min, "
            f"{trained['wall'] / 60:.1f} wall-min",
            flush=True,
        )
    else:
        model = build_classifier(int(labels.max()) + 1, args.box)
        model.load_weights(args.model)
    margin = args.jitter
    centred = boxes[held][:, margin:-margin, margin:-margin, margin:-margin] if margin else boxes[held]
    validation = np.argmax(classify_boxes(model, centred), axis=1)
    report["validation_accuracy"] = float(np.mean(validation == labels[held]))
    print(
        f"\nValidation (5 % of the training particles, centred): accuracy {report['validation_accuracy']:.3f}"
    )
    print(confusion_text(labels[held], validation, names))
    report["truth"] = accuracy_on_truth(model, args.data, classes, args)
    report["picks"] = {}
    for picks in args.picks:
        scored = reclass_picks(model, picks, args.data, classes, args)
        report["picks"][picks.name] = {
            label: {
                "f1": {row.name: row.f1 for row in s["occupancy"]},
                "f1_distance": {row.name: row.f1 for row in s["distance"]},
                "accuracy_on_particles": s["accuracy_on_particles"],
            }
            for label, s in scored.items()
        }
        report["picks"][picks.name]["table"] = f1_table(scored)
    (args.work / f"report_{args.name}.json").write_text(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
