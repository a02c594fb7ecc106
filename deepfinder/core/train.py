"""Training the U-net: patch stream, losses, validation, history, checkpoints, resume.

One call to :func:`train` runs epochs of ``steps_per_epoch`` batches, each
followed by ``validation_steps`` validation batches, and after every epoch
writes to ``out_dir``:

- ``history.json``: a list with one row per epoch (see :func:`train`);
- ``checkpoint.weights.h5`` + ``checkpoint.json`` (epoch, best score, settings)
  + ``checkpoint.optimizer.npz`` (Adam's moments): what resume needs;
- ``best.weights.h5`` + ``best.json``: the model of the epoch with the best
  validation score, loadable with :func:`deepfinder.core.model.load_model`.

A crash loses at most the epoch in progress: calling :func:`train` again
on the same ``out_dir`` continues after the last completed epoch with the
same batches an uninterrupted run would have drawn (each epoch's random
generator is seeded by ``(seed, epoch)``).

Intensities are normalised per tomogram (:mod:`deepfinder.core.normalize`),
exactly as segmentation does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .io import read_volume
from .model import (
    build_unet,
    import_tensorflow,
    load_model,
    logits_model,
    metadata_path,
    read_metadata,
    resolve_precision,
    save_model,
)
from .normalize import tomogram_stats
from .particles import ParticleTable
from .sampling import draw_rows, make_batch, particles_inside, patch_origins, prefetch, training_batches
from .settings import TrainingSettings

PathLike = str | os.PathLike

log = logging.getLogger(__name__)

NORMALISATION = "per-tomogram mean and standard deviation (deepfinder.core.normalize.tomogram_stats)"

HISTORY = "history.json"
CHECKPOINT = "checkpoint.weights.h5"
OPTIMIZER_STATE = "checkpoint.optimizer.npz"
BEST = "best.weights.h5"

# Seeds the validation patches apart from any training epoch's generator.
VALIDATION_STREAM = 2**31 - 1


@dataclass(frozen=True)
class PatchSource:
    """Open volumes and the particles patches are centred on (one row per particle).

    Attributes
    ----------
    volumes, labels : lists of (z, y, x) arrays
        Tomograms and their label maps, memory-mapped.
    stats : list of (mean, std)
        Normalisation statistics of each tomogram.
    tomo_index : (n,) int array
        Index into ``volumes`` of each particle.
    centres : (n, 3) array
        Particle positions, (z, y, x) voxels.
    class_ids : (n,) int array
        Particle classes.
    """

    volumes: list
    labels: list
    stats: list
    tomo_index: np.ndarray
    centres: np.ndarray
    class_ids: np.ndarray

    def subset(self, keep: np.ndarray) -> PatchSource:
        """The same volumes with the particles selected by ``keep`` (a mask or indices)."""
        return dataclasses.replace(
            self, tomo_index=self.tomo_index[keep], centres=self.centres[keep], class_ids=self.class_ids[keep]
        )


@dataclass
class _Progress:
    """Where a training run is: last completed epoch, best epoch and its score."""

    epoch: int = 0
    best_epoch: int | None = None
    best_score: float | None = None


def train(
    tomograms: Sequence[PathLike],
    label_maps: Sequence[PathLike],
    particles: Sequence[ParticleTable],
    out_dir: PathLike,
    n_classes: int,
    settings: TrainingSettings,
    *,
    validation_tomograms: Sequence[PathLike] = (),
    validation_label_maps: Sequence[PathLike] = (),
    validation_particles: Sequence[ParticleTable] = (),
    validation_fraction: float = 0.0,
    initial_weights: PathLike | None = None,
    resume: bool = True,
    class_names: Sequence[str] | None = None,
    voxel_size: float = 1.0,
    on_epoch_end: Callable[[int, dict], None] | None = None,
) -> Path:
    """Train the DeepFinder U-net on tomograms, their label maps and particle positions.

    Progress (the running loss about every tenth of an epoch, a summary line per
    epoch) is logged at INFO level by the ``deepfinder.core.train`` logger.

    Parameters
    ----------
    tomograms : sequence of paths
        MRC tomograms, read memory-mapped.
    label_maps : sequence of paths
        One label map (MRC, 0 = background, 1..n_classes-1) per tomogram, same
        shape (see :mod:`deepfinder.core.targets`).
    particles : sequence of ParticleTable
        One table per tomogram (its ``tomo`` column is not looked at): patches
        are centred on these positions (x, y, z voxels). Particles outside the
        volume are skipped with a warning; every class 1..n_classes-1 needs
        at least one particle.
    out_dir : path
        Where history, checkpoints and the best model are written.
    n_classes : int
        Number of classes, background included.
    settings : TrainingSettings
        Patch and batch sizes, epochs, steps, loss, learning rate, shift, seed,
        precision (see :class:`deepfinder.core.settings.TrainingSettings` for
        each one and :func:`deepfinder.core.settings.training_preset`). Patches
        are at most the smallest tomogram edge. Each epoch runs
        ``steps_per_epoch`` training batches then ``validation_steps``
        validation batches (the same validation patches every epoch, so
        epochs are comparable). Settings that train badly are warned about
        (:meth:`~deepfinder.core.settings.TrainingSettings.warnings`).
    validation_tomograms, validation_label_maps, validation_particles : sequences
        Held-out tomograms for validation, as for training.
    validation_fraction : float
        When no validation tomograms are given: fraction of each class's
        particles held out for validation (their patches may overlap
        training patches of the same tomogram). 0 and no validation
        tomograms: no validation, and the best model is the one with the
        lowest training loss.
    initial_weights : path, optional
        A ``.weights.h5`` model to fine-tune; it must have ``n_classes`` classes.
        Ignored when resuming from a checkpoint.
    resume : bool
        Continue from ``out_dir``'s checkpoint if there is one (with its
        history, optimizer state and best score); False starts afresh and
        overwrites.
    class_names : sequence of str, optional
        ``n_classes`` names, background first, stored with the model.
    voxel_size : float
        Angstrom per voxel of the training tomograms, stored with the model.
    on_epoch_end : callable(epoch, row), optional
        Called after each epoch's checkpoint and history are written, with the
        1-based epoch and its history row; an exception it raises stops
        training (the files written so far stay valid).

    Returns
    -------
    Path
        ``out_dir / "best.weights.h5"``.

    Notes
    -----
    Each history row holds ``epoch``, ``train_loss``, ``val_loss``, per-class
    voxel ``val_precision``, ``val_recall``, ``val_f1`` (lists indexed by class
    id, background first; ``None`` where undefined), ``val_mean_f1`` (mean
    over particle classes: the score that selects the best model), ``seconds``,
    ``data_wait_seconds`` (time the model waited for batches) and
    ``step_seconds`` (time in training steps).

    The weights start from ``settings.seed``, which also fixes the patches
    drawn, and so the training up to floating-point reduction order; it sets
    the process-wide random seeds of Python, numpy and TensorFlow
    (``keras.utils.set_random_seed``).
    """
    _check_inputs(n_classes, settings, validation_fraction, class_names)
    patch_size, batch_size, steps_per_epoch = (
        settings.patch_size,
        settings.batch_size,
        settings.steps_per_epoch,
    )
    precision = resolve_precision(settings.precision)
    out_dir = Path(out_dir)
    data = _open_data(tomograms, label_maps, particles, n_classes, patch_size, "training")
    validation = None
    if validation_tomograms or validation_label_maps or validation_particles:
        if validation_fraction:
            raise ValueError("Give either validation tomograms or validation_fraction, not both")
        validation = _open_data(
            validation_tomograms,
            validation_label_maps,
            validation_particles,
            n_classes,
            patch_size,
            "validation",
        )
    elif validation_fraction:
        data, validation = _hold_out(data, validation_fraction, np.random.default_rng(settings.seed))
    _check_classes_present(data.class_ids, n_classes)
    for message in settings.warnings(n_classes - 1):
        warnings.warn(message, stacklevel=2)
    if validation is None:
        warnings.warn(
            "No validation data: the best model is the epoch with the lowest training "
            "loss. Give validation tomograms or a validation_fraction.",
            stacklevel=2,
        )
    _check_initial_weights(initial_weights, n_classes)

    progress = _read_checkpoint(out_dir, n_classes, patch_size) if resume else None
    tf = import_tensorflow()
    import keras

    # Seeds Keras' weight initialisers (a process-wide setting) so that a run is repeatable.
    keras.utils.set_random_seed(settings.seed)
    model = build_unet(n_classes, patch_size, precision)
    optimizer = keras.optimizers.Adam(learning_rate=settings.learning_rate, beta_1=0.9, beta_2=0.999)
    optimizer.build(model.trainable_variables)
    if progress is not None:
        if initial_weights is not None:
            warnings.warn(f"Resuming from the checkpoint in {out_dir}: initial_weights ignored", stacklevel=2)
        model.load_weights(out_dir / CHECKPOINT)
        _restore_optimizer(optimizer, out_dir / OPTIMIZER_STATE)
        history = _read_history(out_dir)[: progress.epoch]
    else:
        if initial_weights is not None:
            model.set_weights(_load_initial_weights(initial_weights, n_classes))
        history = []
        progress = _Progress()
    if progress.epoch >= settings.epochs and (out_dir / BEST).exists():
        return out_dir / BEST

    loss_function = {
        "dice": soft_dice_loss,
        "cross_entropy": cross_entropy_loss,
        "dice_cross_entropy": dice_cross_entropy_loss,
    }[settings.loss]

    network = logits_model(model)

    @tf.function
    def train_step(x, y):
        truth = tf.one_hot(tf.cast(y, tf.int32), n_classes)
        with tf.GradientTape() as tape:
            value = loss_function(truth, network(x, training=True))
        optimizer.apply_gradients(
            zip(tape.gradient(value, model.trainable_variables), model.trainable_variables)
        )
        return value

    @tf.function
    def validation_step(x, y):
        truth = tf.one_hot(tf.cast(y, tf.int32), n_classes)
        logits = network(x, training=False)
        predicted = tf.one_hot(tf.argmax(logits, axis=-1), n_classes)
        axes = (0, 1, 2, 3)
        return (
            loss_function(truth, logits),
            tf.reduce_sum(truth * predicted, axes),
            tf.reduce_sum(predicted, axes),
            tf.reduce_sum(truth, axes),
        )

    validation_origins = None
    if validation is not None:
        validation_origins = _validation_patches(validation, settings)
    metadata = {
        **dataclasses.asdict(settings),
        "n_classes": n_classes,
        "precision": precision,
        "class_names": list(class_names)
        if class_names
        else [f"class {c}" if c else "background" for c in range(n_classes)],
        "voxel_size": voxel_size,
        "normalisation": NORMALISATION,
        "tomograms": [str(t) for t in tomograms],
        "initial_weights": str(initial_weights) if initial_weights else None,
    }

    # Plain lines, not a terminal progress bar, so that log files stay readable.
    report_every = max(1, steps_per_epoch // 10)
    epochs = settings.epochs
    for epoch in range(progress.epoch + 1, epochs + 1):
        started = time.perf_counter()
        step_size = learning_rate_at(epoch, epochs, settings.learning_rate, settings.final_learning_rate)
        optimizer.learning_rate.assign(step_size)
        rng = np.random.default_rng([settings.seed, epoch])
        batches = prefetch(
            training_batches(
                data.volumes,
                data.labels,
                data.stats,
                data.tomo_index,
                data.centres,
                data.class_ids,
                patch_size=patch_size,
                batch_size=batch_size,
                n_batches=steps_per_epoch,
                rng=rng,
                bootstrap=settings.bootstrap,
                shift_voxels=settings.shift_voxels,
            ),
            depth=1,
        )
        losses, waited, stepped = [], 0.0, 0.0
        for step in range(1, steps_per_epoch + 1):
            tick = time.perf_counter()
            x, y = next(batches)
            tock = time.perf_counter()
            losses.append(float(train_step(x, y)))
            waited += tock - tick
            stepped += time.perf_counter() - tock
            if step % report_every == 0 or step == steps_per_epoch:
                log.info(
                    "epoch %d/%d step %d/%d: loss %.4f, %.2f s/step",
                    epoch,
                    epochs,
                    step,
                    steps_per_epoch,
                    np.mean(losses),
                    stepped / step,
                )
        batches.close()
        if not all(math.isfinite(v) for v in losses):
            raise FloatingPointError(
                f"The training loss became {losses[-1]} at epoch {epoch}: lower the learning rate"
            )
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "learning_rate": step_size}
        if validation is not None:
            row.update(
                _validate(validation_step, validation, validation_origins, patch_size, batch_size, n_classes)
            )
        row.update(seconds=time.perf_counter() - started, data_wait_seconds=waited, step_seconds=stepped)
        history.append(row)

        score = row["val_mean_f1"] if validation is not None else -row["train_loss"]
        if progress.best_score is None or score > progress.best_score:
            progress.best_epoch, progress.best_score = epoch, score
            save_model(model, out_dir / BEST, _best_metadata(metadata, row, epoch, validation))
        progress.epoch = epoch
        _write_checkpoint(model, optimizer, out_dir, {**metadata, **dataclasses.asdict(progress)})
        _write_json(out_dir / HISTORY, history)
        log.info(_summary(row, progress.best_epoch))
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    best_meta = metadata_path(out_dir / BEST)
    _write_json(best_meta, {**json.loads(best_meta.read_text()), "epochs_trained": progress.epoch})
    return out_dir / BEST


def learning_rate_at(
    epoch: int, epochs: int, learning_rate: float, final_learning_rate: float | None = None
) -> float:
    """Adam step size of 1-based ``epoch``: geometric from the first to the final one."""
    if final_learning_rate is None or epochs == 1:
        return learning_rate
    return float(learning_rate * (final_learning_rate / learning_rate) ** ((epoch - 1) / (epochs - 1)))


def soft_dice_loss(truth, logits):
    """1 - mean over classes of the soft Dice coefficient, summed over the batch.

    ``truth`` is one-hot and ``logits`` the network's pre-softmax output, both
    (batch, z, y, x, classes). A smoothing term of 1 voxel keeps classes absent
    from a batch defined; such a class scores 1 / (1 + its predicted volume), so
    the batch also pushes down its false positives (see benchmarks/RESULTS.md for
    a run that averaged only the classes present).
    """
    import tensorflow as tf

    scores = tf.nn.softmax(logits)
    axes = (0, 1, 2, 3)
    overlap = tf.reduce_sum(truth * scores, axes)
    total = tf.reduce_sum(truth, axes) + tf.reduce_sum(scores, axes)
    return 1.0 - tf.reduce_mean((2.0 * overlap + 1.0) / (total + 1.0))


def cross_entropy_loss(truth, logits):
    """Mean voxel-wise categorical cross-entropy (``truth`` one-hot, ``logits`` pre-softmax).

    Computed from the logits, not from clipped probabilities: a voxel whose true
    class got a probability of 1e-30 still pulls it up with full strength, so a
    network that drifted to all-background recovers.
    """
    import tensorflow as tf

    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=truth, logits=logits))


def dice_cross_entropy_loss(truth, logits):
    """Sum of :func:`soft_dice_loss` and :func:`cross_entropy_loss`.

    Cross-entropy alone is dominated by background and large particles, so thin
    classes are learnt late; Dice alone learns slowly at the paper's step size
    and can collapse to all-background at larger ones. The sum learns every
    class early and tolerates a step size of 1e-3.
    """
    return soft_dice_loss(truth, logits) + cross_entropy_loss(truth, logits)


def voxel_scores(
    true_positives: np.ndarray, predicted: np.ndarray, actual: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-class voxel precision, recall and F1 from counts (NaN where undefined)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "precision": true_positives / predicted,
            "recall": true_positives / actual,
            "f1": 2 * true_positives / (predicted + actual),
        }


# --------------------------------------------------------------------------- checks


def _check_inputs(n_classes, settings: TrainingSettings, validation_fraction, class_names) -> None:
    if int(n_classes) != n_classes or n_classes < 2:
        raise InputError(f"n_classes must be >= 2 (background + particle classes), got {n_classes}")
    settings.check()
    if not 0 <= validation_fraction < 1:
        raise InputError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    if class_names is not None and len(class_names) != n_classes:
        raise InputError(
            f"class_names has {len(class_names)} names for {n_classes} classes (background included)"
        )


def _open_data(tomograms, label_maps, particles, n_classes, patch_size, role) -> PatchSource:
    """Open volumes memory-mapped, check them, and gather the patch centres."""
    if not (len(tomograms) == len(label_maps) == len(particles)):
        raise InputError(
            f"Give one label map and one particle table per {role} tomogram: got "
            f"{len(tomograms)} tomograms, {len(label_maps)} label maps, "
            f"{len(particles)} particle tables"
        )
    if not len(tomograms):
        raise InputError(f"No {role} tomograms given")
    volumes, labels, stats, tomo_index, centres, class_ids = [], [], [], [], [], []
    for index, (tomogram_path, label_path, table) in enumerate(zip(tomograms, label_maps, particles)):
        volume = read_volume(tomogram_path)
        label_map = read_volume(label_path)
        if label_map.shape != volume.shape:
            raise InputError(
                f"Label map {label_path} has shape {label_map.shape} but tomogram "
                f"{tomogram_path} has {volume.shape}: they must match voxel for voxel"
            )
        if min(volume.shape) < patch_size:
            raise InputError(
                f"Patch size {patch_size} is larger than tomogram {tomogram_path} "
                f"{volume.shape}: use a patch size <= {min(volume.shape) // 4 * 4}"
            )
        try:
            stats.append(tomogram_stats(volume))
        except InputError as error:
            raise InputError(f"Tomogram {tomogram_path}: {error}") from error
        label_range = (int(label_map.min()), int(label_map.max()))
        if label_range[0] < 0 or label_range[1] >= n_classes:
            raise InputError(
                f"Label map {label_path} holds labels {label_range[0]}..{label_range[1]} "
                f"but training is for {n_classes} classes (0..{n_classes - 1})"
            )
        bad = sorted({int(c) for c in table.class_id} - set(range(1, n_classes)))
        if bad:
            raise InputError(
                f"Particles of {tomogram_path} have class id(s) {bad}, outside "
                f"1..{n_classes - 1} for {n_classes} classes"
            )
        table = particles_inside(table, volume.shape, str(tomogram_path))
        volumes.append(volume)
        labels.append(label_map)
        tomo_index.append(np.full(len(table), index))
        centres.append(table.zyx)
        class_ids.append(table.class_id)
    return PatchSource(
        volumes,
        labels,
        stats,
        np.concatenate(tomo_index),
        np.concatenate(centres),
        np.concatenate(class_ids),
    )


def _check_classes_present(class_ids, n_classes):
    missing = sorted(set(range(1, n_classes)) - {int(c) for c in class_ids})
    if missing:
        raise InputError(
            f"Class(es) {missing} have no training particles (inside the volumes): "
            "patches are centred on particles, so the network would never learn "
            "them; add positions or lower n_classes"
        )


def _hold_out(
    data: PatchSource, fraction: float, rng: np.random.Generator
) -> tuple[PatchSource, PatchSource]:
    """Split particles into training and validation, ``fraction`` of each class (at least one)."""
    held = np.zeros(len(data.class_ids), dtype=bool)
    for class_id in np.unique(data.class_ids):
        rows = np.flatnonzero(data.class_ids == class_id)
        if len(rows) < 2:
            warnings.warn(
                f"Class {class_id} has a single particle: it is used for training only", stacklevel=3
            )
            continue
        n_held = min(len(rows) - 1, max(1, round(fraction * len(rows))))
        held[rng.choice(rows, size=n_held, replace=False)] = True
    return data.subset(~held), data.subset(held)


def _check_initial_weights(initial_weights, n_classes) -> None:
    """Check the class count of a model to fine-tune from its metadata, before any training."""
    if initial_weights is None:
        return
    initial_weights = Path(initial_weights)
    if not initial_weights.exists():
        raise FileNotFoundError(f"Initial model not found: {initial_weights}")
    metadata = read_metadata(initial_weights)
    if metadata.get("n_classes", n_classes) != n_classes:
        raise InputError(
            f"Initial model {initial_weights} has {metadata['n_classes']} classes but "
            f"the training data has {n_classes} (background included): fine-tune a "
            "model with the same classes or train from scratch"
        )


def _load_initial_weights(initial_weights, n_classes) -> list[np.ndarray]:
    try:
        model, _ = load_model(initial_weights, n_classes=n_classes)
    except InputError as error:
        raise InputError(f"Cannot fine-tune from {initial_weights}: {error}") from error
    return model.get_weights()


# --------------------------------------------------------------------------- validation


def _validation_patches(validation: PatchSource, settings: TrainingSettings) -> tuple[np.ndarray, np.ndarray]:
    """Fixed (tomogram, origin) of every validation patch, class-balanced."""
    rng = np.random.default_rng([settings.seed, VALIDATION_STREAM])
    n_patches = settings.batch_size * settings.validation_steps
    rows = draw_rows(validation.class_ids, n_patches, rng, bootstrap=True)
    tomo_index = validation.tomo_index[rows]
    origins = np.empty((len(rows), 3), dtype=int)
    for t in np.unique(tomo_index):
        here = tomo_index == t
        origins[here] = patch_origins(
            validation.centres[rows[here]],
            validation.volumes[t].shape,
            settings.patch_size,
            settings.shift_voxels,
            rng,
        )
    return tomo_index, origins


def _validate(validation_step, validation: PatchSource, origins, patch_size, batch_size, n_classes) -> dict:
    tomo_index, corners = origins

    def batches():
        for start in range(0, len(tomo_index), batch_size):
            yield make_batch(
                validation.volumes,
                validation.labels,
                validation.stats,
                tomo_index[start : start + batch_size],
                corners[start : start + batch_size],
                patch_size,
            )

    losses = []
    counts = np.zeros((3, n_classes))
    for x, y in prefetch(batches()):
        value, *class_counts = validation_step(x, y)
        losses.append(float(value))
        counts += np.array([c.numpy() for c in class_counts])
    scores = voxel_scores(*counts)
    particle_f1 = scores["f1"][1:]
    return {
        "val_loss": float(np.mean(losses)),
        **{f"val_{name}": _json_list(values) for name, values in scores.items()},
        "val_mean_f1": float(np.nanmean(particle_f1)) if np.isfinite(particle_f1).any() else 0.0,
    }


def _json_list(values: np.ndarray) -> list:
    return [float(v) if np.isfinite(v) else None for v in values]


# --------------------------------------------------------------------------- files


def _best_metadata(metadata, row, epoch, validation) -> dict:
    return {
        **metadata,
        "best_epoch": epoch,
        "selected_by": "val_mean_f1" if validation is not None else "train_loss",
        "train_loss": row["train_loss"],
        **{
            key: row[key]
            for key in ("val_loss", "val_precision", "val_recall", "val_f1", "val_mean_f1")
            if key in row
        },
    }


def _write_json(path: Path, content) -> None:
    """Write JSON through a temporary file so a crash never leaves a truncated file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(content, indent=1))
    os.replace(temporary, path)


def _write_checkpoint(model, optimizer, out_dir: Path, state: dict) -> None:
    # Files are completed under temporary names, then renamed; the state JSON
    # (which names the epoch) is renamed last.
    temporary = out_dir / "checkpoint.tmp.weights.h5"
    save_model(model, temporary, state)
    np.savez(out_dir / "checkpoint.tmp.optimizer.npz", *[v.numpy() for v in optimizer.variables])
    os.replace(temporary, out_dir / CHECKPOINT)
    os.replace(out_dir / "checkpoint.tmp.optimizer.npz", out_dir / OPTIMIZER_STATE)
    os.replace(metadata_path(temporary), metadata_path(out_dir / CHECKPOINT))


def _read_checkpoint(out_dir: Path, n_classes, patch_size) -> _Progress | None:
    state_file = metadata_path(out_dir / CHECKPOINT)
    if not (state_file.exists() and (out_dir / CHECKPOINT).exists()):
        return None
    saved = json.loads(state_file.read_text())
    for name, value in (("n_classes", n_classes), ("patch_size", patch_size)):
        if saved.get(name) != value:
            raise ValueError(
                f"{out_dir} holds a checkpoint with {name} = {saved.get(name)}, not "
                f"{value}: use another output folder or resume=False to start afresh"
            )
    return _Progress(saved["epoch"], saved["best_epoch"], saved["best_score"])


def _restore_optimizer(optimizer, path: Path) -> None:
    if not path.exists():
        warnings.warn(f"{path} missing: resuming with a fresh optimizer state", stacklevel=3)
        return
    with np.load(path) as saved:
        arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    variables = optimizer.variables
    if len(arrays) != len(variables) or any(a.shape != tuple(v.shape) for a, v in zip(arrays, variables)):
        raise ValueError(
            f"{path} does not match this model's optimizer: remove it to resume with a fresh optimizer state"
        )
    for variable, array in zip(variables, arrays):
        # The step size is the caller's, not the checkpoint's, so it can be changed on resume.
        if "learning_rate" not in variable.path:
            variable.assign(array)


def _read_history(out_dir: Path) -> list[dict]:
    path = out_dir / HISTORY
    return json.loads(path.read_text()) if path.exists() else []


def _summary(row: dict, best_epoch) -> str:
    text = f"epoch {row['epoch']}: train loss {row['train_loss']:.4f}"
    if "val_loss" in row:
        f1 = " ".join("-" if v is None else f"{v:.2f}" for v in row["val_f1"][1:])
        text += f", val loss {row['val_loss']:.4f}, val F1 per class {f1} (mean {row['val_mean_f1']:.3f})"
    text += (
        f", {row['seconds']:.0f} s ({row['data_wait_seconds']:.1f} s waiting for data)"
        f", best epoch {best_epoch}"
    )
    return text
