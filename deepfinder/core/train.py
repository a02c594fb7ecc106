"""Training the U-net: patch stream, losses, validation, history, checkpoints, resume.

One call to :func:`train` runs epochs of ``steps_per_epoch`` batches, each
followed by ``validation_steps`` validation batches, and after every epoch
writes to ``out_dir``:

- ``best.weights.h5`` + ``best.json``: the model of the epoch with the best
  validation score, loadable with :func:`deepfinder.core.model.load_model`;
- ``checkpoint-NNNN.weights.h5`` (+ its ``.json``) and
  ``checkpoint-NNNN.optimizer.npz``: the model and Adam's moments after epoch
  NNNN (:func:`last_checkpoint`);
- ``checkpoint.json``: the run's state, replaced in one step once the files it
  names are complete: the last completed epoch, the best one and its score, the
  history, and the fingerprint of the run's data and settings;
- ``history.json``: a list with one row per epoch (see :func:`train`), a copy of
  the checkpoint's history for plots.

A kill at any moment loses at most the epoch in progress: ``checkpoint.json``
always names the whole files of one epoch, and calling :func:`train` again on
the same ``out_dir`` continues after that epoch with its history (rewriting
``history.json`` from it) and the same batches an uninterrupted run would
have drawn (each epoch's random generator is seeded by ``(seed, epoch)``). A
run is only continued with the same data (identified by content, not by path,
so a moved project still resumes) and the same settings, except those of
:data:`~deepfinder.core.settings.RESUMABLE_TRAINING_SETTINGS`; anything else
is refused before any work, as is an output folder that cannot be written.

Intensities are normalised per tomogram (:mod:`deepfinder.core.normalize`),
exactly as segmentation does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import os
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .cluster import check_label_map
from .errors import InputError
from .io import atomic_output, read_volume, refuse_overwriting_inputs, warn_if_other_sampling
from .model import (
    build_unet,
    check_weights_file,
    distribution_strategy,
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
from .sampling import (
    check_labels_at_particles,
    draw_rows,
    make_batch,
    particles_inside,
    patch_origins,
    prefetch,
    training_batches,
)
from .settings import RESUMABLE_TRAINING_SETTINGS, SettingError, TrainingSettings

PathLike = str | os.PathLike

log = logging.getLogger(__name__)

NORMALISATION = "per-tomogram mean and standard deviation (deepfinder.core.normalize.tomogram_stats)"

HISTORY = "history.json"
CHECKPOINT_STATE = "checkpoint.json"
BEST = "best.weights.h5"
# The remedy for an output folder holding another run.
START_AFRESH = (
    "use another output folder, or start afresh with --restart (resume=False in Python), "
    "which replaces that run"
)
# z-slices of a tomogram read into its fingerprint: another tomogram, or the same one
# reprocessed, differs in every slice (label maps and particle tables are read whole).
TOMOGRAM_SLICES_FINGERPRINTED = 32

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


class TrainingFolderError(InputError):
    """The output folder cannot take this training: not writable, or holding another run."""


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
        at least one particle. Rows of class 0 are background points, e.g. a
        review's rejected picks: patches are centred on them too, drawn as a
        class of their own, so the network sees, labelled as in the label map,
        places it took for particles (patches centred on particles seldom
        reach a false positive far from every particle).
    out_dir : path
        Where history, checkpoints and the best model are written (see
        :mod:`deepfinder.core.train`).
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
        history, optimizer state and best score): it must be of the same data
        and settings (except :data:`~deepfinder.core.settings.RESUMABLE_TRAINING_SETTINGS`),
        and when it already holds ``settings.epochs`` epochs or more, nothing is
        trained. False removes the run in ``out_dir`` (checkpoints, history, best
        model) and starts afresh.
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

    Raises
    ------
    TrainingFolderError
        Before any model is built: ``out_dir`` cannot be written, or holds a
        checkpoint of other data or settings (the message names what differs).

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

    With several GPUs visible, training is spread over all of them
    (:func:`~deepfinder.core.model.distribution_strategy`): each step splits
    the batch of ``settings.batch_size`` patches between the devices, and the
    loss and its gradient are those of the whole batch (:func:`loss_sums`), so
    the training is that of one device up to floating-point reduction order.
    Checkpoints do not depend on the number of devices: a run continues on
    more or fewer of them.
    """
    _check_inputs(n_classes, settings, validation_fraction, class_names)
    refuse_overwriting_inputs(
        [out_dir, *_run_files(Path(out_dir))],
        [*tomograms, *label_maps, *validation_tomograms, *validation_label_maps, initial_weights],
    )
    patch_size, batch_size, steps_per_epoch = (
        settings.patch_size,
        settings.batch_size,
        settings.steps_per_epoch,
    )
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
    _check_initial_weights(initial_weights, n_classes)
    _check_writable(out_dir)
    class_names = (
        list(class_names) if class_names else [f"class {c}" if c else "background" for c in range(n_classes)]
    )
    fingerprint = {
        "settings": _run_settings(settings, n_classes, class_names, voxel_size, validation_fraction),
        "training": _data_fingerprint(tomograms, label_maps, particles),
        "validation": _data_fingerprint(validation_tomograms, validation_label_maps, validation_particles),
    }
    state = _read_checkpoint(out_dir, fingerprint) if resume else None
    if resume:
        _remove_leftovers(out_dir, state)
    else:
        _remove_run(out_dir)
    if state is None:
        history, progress = [], _Progress()
    else:
        history = state["history"]
        # A kill after the checkpoint and before history.json left it a row short.
        _write_json(out_dir / HISTORY, history)
        progress = _Progress(state["epoch"], state["best_epoch"], state["best_score"])
        if progress.epoch >= settings.epochs:
            log.warning(
                "%s already holds this training up to epoch %d (%d asked for): nothing to train "
                "(ask for more epochs to continue it)",
                out_dir,
                progress.epoch,
                settings.epochs,
            )
            return out_dir / BEST

    # Notices after every refusal, so that a refused run shows only its error.
    for message in settings.warnings(n_classes - 1):
        warnings.warn(message, stacklevel=2)
    if validation is None:
        warnings.warn(
            "No validation data: the best model is the epoch with the lowest training "
            "loss. Give validation tomograms or a validation_fraction.",
            stacklevel=2,
        )
    # May load TensorFlow (to look for a GPU): after every check.
    precision = resolve_precision(settings.precision)
    tf = import_tensorflow()
    import keras

    strategy = distribution_strategy()
    n_devices = strategy.num_replicas_in_sync
    if batch_size < n_devices:
        raise SettingError(
            "batch_size",
            f"{batch_size} patches cannot be split between the {n_devices} devices that train "
            f"together: give at least {n_devices}, or fewer GPUs",
        )
    if n_devices > 1:
        log.info(
            "training on %d devices (%s): each batch of %d patches split %s",
            n_devices,
            ", ".join(device.rpartition("device:")[2] for device in strategy.extended.worker_devices),
            batch_size,
            " + ".join(str(len(part)) for part in np.array_split(np.arange(batch_size), n_devices)),
        )
    with strategy.scope():
        # Seeds Keras' weight initialisers (a process-wide setting) so that a run is repeatable.
        keras.utils.set_random_seed(settings.seed)
        model = build_unet(n_classes, patch_size, precision)
        optimizer = keras.optimizers.Adam(learning_rate=settings.learning_rate, beta_1=0.9, beta_2=0.999)
        optimizer.build(model.trainable_variables)
    if state is not None:
        if initial_weights is not None:
            warnings.warn(f"Resuming from the checkpoint in {out_dir}: initial_weights ignored", stacklevel=2)
        model.load_weights(out_dir / state["weights"])
        _restore_optimizer(optimizer, out_dir / state["optimizer_state"])
    elif initial_weights is not None:
        model.set_weights(_load_initial_weights(initial_weights, n_classes))

    network = logits_model(model)

    def device_train_step(x, y):
        """One device's part of a training step: ``x``, ``y`` are its patches of the batch."""
        truth = tf.one_hot(tf.cast(y, tf.int32), n_classes)
        with tf.GradientTape() as tape:
            value = loss_of_sums(settings.loss, _whole_batch(loss_sums(truth, network(x, training=True))))
        # The optimizer adds up the devices' gradients before its update.
        optimizer.apply_gradients(
            zip(tape.gradient(value, model.trainable_variables), model.trainable_variables)
        )
        return value

    def device_validation_sums(x, y):
        truth = tf.one_hot(tf.cast(y, tf.int32), n_classes)
        logits = network(x, training=False)
        predicted = tf.one_hot(tf.argmax(logits, axis=-1), n_classes)
        axes = (0, 1, 2, 3)
        counts = (
            tf.reduce_sum(truth * predicted, axes),
            tf.reduce_sum(predicted, axes),
            tf.reduce_sum(truth, axes),
        )
        return loss_sums(truth, logits), counts

    @tf.function
    def distributed_train_step(x, y):
        # Every device computes the same value, the loss of the whole batch.
        values = strategy.run(device_train_step, (x, y))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, values, axis=None)

    @tf.function
    def distributed_validation_step(x, y):
        sums, counts = tf.nest.map_structure(
            lambda value: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None),
            strategy.run(device_validation_sums, (x, y)),
        )
        return (loss_of_sums(settings.loss, sums), *counts)

    def train_step(x, y):
        return distributed_train_step(_split_batch(strategy, x), _split_batch(strategy, y))

    def validation_step(x, y):
        return distributed_validation_step(_split_batch(strategy, x), _split_batch(strategy, y))

    validation_origins = None
    if validation is not None:
        validation_origins = _validation_patches(validation, settings)
    metadata = {
        **dataclasses.asdict(settings),
        "n_classes": n_classes,
        "precision": precision,
        "class_names": class_names,
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
        _write_checkpoint(
            model, optimizer, out_dir, {**metadata, **dataclasses.asdict(progress)}, fingerprint, history
        )
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
    return loss_of_sums("dice", loss_sums(truth, logits))


def cross_entropy_loss(truth, logits):
    """Mean voxel-wise categorical cross-entropy (``truth`` one-hot, ``logits`` pre-softmax).

    Computed from the logits, not from clipped probabilities: a voxel whose true
    class got a probability of 1e-30 still pulls it up with full strength, so a
    network that drifted to all-background recovers.
    """
    return loss_of_sums("cross_entropy", loss_sums(truth, logits))


def dice_cross_entropy_loss(truth, logits):
    """Sum of :func:`soft_dice_loss` and :func:`cross_entropy_loss`.

    Cross-entropy alone is dominated by background and large particles, so thin
    classes are learnt late; Dice alone learns slowly at the paper's step size
    and can collapse to all-background at larger ones. The sum learns every
    class early and tolerates a step size of 1e-3.
    """
    return loss_of_sums("dice_cross_entropy", loss_sums(truth, logits))


def loss_sums(truth, logits) -> dict:
    """The sums over the voxels of a batch that its losses are made of (:func:`loss_of_sums`).

    ``truth`` is one-hot and ``logits`` the network's pre-softmax output, both
    (batch, z, y, x, classes) (any shape ending with the classes). Per class:
    ``overlap`` of truth and softmax scores, and their ``total``; for all voxels:
    their ``cross_entropy`` and their number (``voxels``). The sums of the parts
    of a batch add up to those of the batch, so devices that each hold a part
    compute the loss of the whole batch.
    """
    import tensorflow as tf

    scores = tf.nn.softmax(logits)
    axes = tuple(range(len(truth.shape) - 1))  # all but the classes
    return {
        "overlap": tf.reduce_sum(truth * scores, axes),
        "total": tf.reduce_sum(truth, axes) + tf.reduce_sum(scores, axes),
        "cross_entropy": tf.reduce_sum(tf.nn.softmax_cross_entropy_with_logits(labels=truth, logits=logits)),
        "voxels": tf.cast(tf.reduce_prod(tf.shape(truth)[:-1]), tf.float32),
    }


def loss_of_sums(loss: str, sums: dict):
    """The loss ``loss`` (a name of :data:`~deepfinder.core.settings.LOSSES`) of a batch from its
    :func:`loss_sums`."""
    import tensorflow as tf

    dice = 1.0 - tf.reduce_mean((2.0 * sums["overlap"] + 1.0) / (sums["total"] + 1.0))
    cross_entropy = sums["cross_entropy"] / sums["voxels"]
    return {"dice": dice, "cross_entropy": cross_entropy, "dice_cross_entropy": dice + cross_entropy}[loss]


def _whole_batch(sums: dict) -> dict:
    """The :func:`loss_sums` of the whole batch, from those of one device's part (in a replica context).

    Their values are the sums over all devices; their gradient flows through this
    device's part only, so the devices' gradients add up to the gradient of the whole
    batch's loss. On one device they are ``sums`` themselves.
    """
    import tensorflow as tf

    totals = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, sums)
    return {name: sums[name] + tf.stop_gradient(totals[name] - sums[name]) for name in sums}


def _split_batch(strategy, array: np.ndarray):
    """A batch as the parts the devices of ``strategy`` compute (consecutive patches, as even as
    possible); the batch itself on one device."""
    n_devices = strategy.num_replicas_in_sync
    if n_devices == 1:
        return array
    import tensorflow as tf

    devices, parts = strategy.extended.worker_devices, np.array_split(array, n_devices)

    def part_of(context):
        with tf.device(devices[context.replica_id_in_sync_group]):
            return tf.constant(parts[context.replica_id_in_sync_group])

    return strategy.experimental_distribute_values_from_function(part_of)


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
        try:
            check_label_map(label_map)
        except InputError as error:
            raise InputError(f"{label_path}: {error}") from error
        if label_map.shape != volume.shape:
            raise InputError(
                f"Label map {label_path} has shape {label_map.shape} but tomogram "
                f"{tomogram_path} has {volume.shape}: they must match voxel for voxel"
            )
        warn_if_other_sampling(label_path, tomogram_path)
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
        bad = sorted({int(c) for c in table.class_id} - set(range(n_classes)))
        if bad:
            raise InputError(
                f"Particles of {tomogram_path} have class id(s) {bad}, outside "
                f"1..{n_classes - 1} for {n_classes} classes (0: background points)"
            )
        n_background = int(np.sum(table.class_id == 0))
        if n_background:
            log.info("%s: %d background points (class 0) centre patches too", tomogram_path, n_background)
        table = particles_inside(table, volume.shape, str(tomogram_path))
        check_labels_at_particles(label_map, table, patch_size, f"Label map {label_path}")
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
    check_weights_file(initial_weights)


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
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(content, indent=1))


def last_checkpoint(out_dir: PathLike) -> Path:
    """The weights of the last completed epoch of the training in ``out_dir`` (loadable with
    :func:`deepfinder.core.model.load_model`)."""
    state_file = Path(out_dir) / CHECKPOINT_STATE
    if not state_file.exists():
        raise FileNotFoundError(f"{out_dir} holds no training checkpoint ({CHECKPOINT_STATE})")
    return Path(out_dir) / json.loads(state_file.read_text())["weights"]


def _write_checkpoint(
    model, optimizer, out_dir: Path, metadata: dict, fingerprint: dict, history: list[dict]
) -> None:
    """Save the model and optimizer after epoch ``metadata["epoch"]``, then the state naming them.

    The state file is replaced in one step once the epoch's files are complete, and the
    previous epoch's files are removed only after it, so that it always names whole files.
    """
    stem = f"checkpoint-{metadata['epoch']:04d}"
    weights, optimizer_state = out_dir / f"{stem}.weights.h5", out_dir / f"{stem}.optimizer.npz"
    save_model(model, weights, metadata)
    np.savez(optimizer_state, *[v.numpy() for v in optimizer.variables])
    state = {
        **metadata,
        "weights": weights.name,
        "optimizer_state": optimizer_state.name,
        "fingerprint": fingerprint,
        "history": history,
    }
    _write_json(out_dir / CHECKPOINT_STATE, state)
    _remove_leftovers(out_dir, state)


def _read_checkpoint(out_dir: Path, fingerprint: dict) -> dict | None:
    """The state of the checkpoint in ``out_dir`` (None if there is none) if it is of this run."""
    state_file = out_dir / CHECKPOINT_STATE
    if not state_file.exists():
        return None
    try:
        state = json.loads(state_file.read_text())
    except ValueError as error:
        raise TrainingFolderError(f"{state_file} is not readable ({error}): {START_AFRESH}") from error
    if "fingerprint" not in state:
        raise TrainingFolderError(
            f"{out_dir} holds a checkpoint of an earlier DeepFinder, which does not record its data: "
            + START_AFRESH
        )
    differences = _differences(state["fingerprint"], fingerprint)
    if differences:
        raise TrainingFolderError(
            f"{out_dir} holds a training of other data or settings ({'; '.join(differences)}): {START_AFRESH}"
        )
    for name in (state["weights"], state["optimizer_state"]):
        if not (out_dir / name).exists():
            raise TrainingFolderError(f"{out_dir / name}, named by {state_file}, is missing: {START_AFRESH}")
    return state


def _remove_leftovers(out_dir: Path, state: dict | None) -> None:
    """Remove the epochs' checkpoint files that ``state`` (the checkpoint's, or None: all) does not
    name: earlier epochs' checkpoints, and what a killed run was writing."""
    named = (
        {state["weights"], metadata_path(state["weights"]).name, state["optimizer_state"]} if state else set()
    )
    # What a killed run was writing under temporary names goes when the same file is written
    # again (io.atomic_output); a half-written optimizer state is named by no checkpoint.
    for path in out_dir.glob("checkpoint-*"):
        if path.name not in named:
            path.unlink(missing_ok=True)


def _run_files(out_dir: Path) -> list[Path]:
    """The files a run writes, or may replace or remove, in ``out_dir``."""
    names = (HISTORY, CHECKPOINT_STATE, BEST, metadata_path(BEST).name)
    return [*(out_dir / name for name in names), *out_dir.glob("checkpoint-*")]


def _remove_run(out_dir: Path) -> None:
    """Remove the files of a training run from ``out_dir``, the checkpoint state first."""
    (out_dir / CHECKPOINT_STATE).unlink(missing_ok=True)
    _remove_leftovers(out_dir, None)
    for pattern in ("checkpoint.*", "best.*", HISTORY + "*"):
        for path in out_dir.glob(pattern):
            path.unlink()


def _restore_optimizer(optimizer, path: Path) -> None:
    with np.load(path) as saved:
        arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    variables = optimizer.variables
    if len(arrays) != len(variables) or any(a.shape != tuple(v.shape) for a, v in zip(arrays, variables)):
        raise TrainingFolderError(f"{path} does not match this model's optimizer: {START_AFRESH}")
    for variable, array in zip(variables, arrays):
        # The step size is the caller's, not the checkpoint's, so it can be changed on resume.
        if "learning_rate" not in variable.path:
            variable.assign(array)


def _check_writable(out_dir: Path) -> None:
    """Refuse an output folder that cannot be created or written, before any work."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainingFolderError(f"Output folder {out_dir} is a file: give a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out_dir):
            pass
    except OSError as error:
        raise TrainingFolderError(
            f"Cannot write to the output folder {out_dir}: {error.strerror or error}"
        ) from error


# --------------------------------------------------------------------------- fingerprint


def _run_settings(
    settings: TrainingSettings, n_classes, class_names, voxel_size, validation_fraction
) -> dict:
    """The settings a checkpoint belongs to: those that give its weights and history their meaning."""
    fixed = {
        name: value
        for name, value in dataclasses.asdict(settings).items()
        if name not in RESUMABLE_TRAINING_SETTINGS
    }
    run = {
        **fixed,
        "n_classes": n_classes,
        "class_names": class_names,
        "voxel_size": voxel_size,
        "validation_fraction": validation_fraction,
    }
    return json.loads(json.dumps(run))  # as read back from the state file


def _data_fingerprint(tomograms, label_maps, particles) -> list[dict]:
    """Paths (to name them in messages) and content digests of each tomogram's inputs."""
    return [
        {
            "tomogram": str(tomogram),
            "tomogram_digest": _volume_digest(read_volume(tomogram), TOMOGRAM_SLICES_FINGERPRINTED),
            "label_map": str(label_map),
            "label_map_digest": _volume_digest(read_volume(label_map)),
            "particles": len(table),
            "particles_digest": _digest(
                [np.asarray(table.class_id, np.int64), np.asarray(table.xyz, np.float64)]
            ),
        }
        for tomogram, label_map, table in zip(tomograms, label_maps, particles)
    ]


def _volume_digest(volume: np.ndarray, n_slices: int | None = None) -> str:
    """Digest of a volume's shape, type and voxels (of ``n_slices`` evenly spaced z-slices if given)."""
    z = (
        range(len(volume))
        if n_slices is None
        else np.unique(np.linspace(0, len(volume) - 1, n_slices).astype(int))
    )
    header = np.array([*volume.shape, *volume.dtype.str.encode()], np.int64)
    return _digest([header, *(volume[i] for i in z)])


def _digest(arrays) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for array in arrays:
        digest.update(np.ascontiguousarray(array))
    return digest.hexdigest()


def _differences(saved: dict, current: dict) -> list[str]:
    """What differs between a checkpoint's fingerprint and this run's, one phrase each."""
    differences = [
        f"{name} {current['settings'].get(name)!r} (the checkpoint's: {saved['settings'].get(name)!r})"
        for name in sorted(set(saved["settings"]) | set(current["settings"]))
        if saved["settings"].get(name) != current["settings"].get(name)
    ]
    for role in ("training", "validation"):
        before, now = saved[role], current[role]
        if len(before) != len(now):
            differences.append(f"{len(now)} {role} tomograms, not {len(before)}")
            continue
        for index, (old, new) in enumerate(zip(before, now), start=1):
            for key in ("tomogram", "label_map"):
                if old[f"{key}_digest"] != new[f"{key}_digest"]:
                    what = f"{role} {key.replace('_', ' ')} {index}"
                    differences.append(
                        f"{what} {new[key]} has changed"
                        if old[key] == new[key]
                        else f"{what} {new[key]} is not {old[key]}"
                    )
            if old["particles_digest"] != new["particles_digest"]:
                counts = new["particles"], old["particles"]
                differences.append(
                    f"the particles of {role} tomogram {index} have changed"
                    + (f" ({counts[0]}, not {counts[1]})" if counts[0] != counts[1] else "")
                )
    return differences


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
