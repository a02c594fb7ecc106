"""Training the U-net: the loop over epochs of patches, validation and the epoch's files.

One call to :func:`train` runs epochs of ``steps_per_epoch`` batches, each
followed by ``validation_steps`` validation batches, and after every epoch
writes the best model, a checkpoint and the history to ``out_dir``
(:mod:`deepfinder.core.checkpoints`). Calling :func:`train` again on the same
``out_dir`` continues after the last complete epoch with its history (rewriting
``history.json`` from it) and the same batches an uninterrupted run would have
drawn (each epoch's random generator is seeded by ``(seed, epoch)``); anything
but the same data and settings is refused before any work, as is an output
folder that cannot be written.

The parts: the patches' sources (:mod:`deepfinder.core.training_data`), the
losses (:mod:`deepfinder.core.losses`), one step (:mod:`deepfinder.core.training_step`),
the run's files (:mod:`deepfinder.core.checkpoints`). Intensities are normalised
per tomogram (:mod:`deepfinder.core.normalize`), exactly as segmentation does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .checkpoints import (
    BEST,
    HISTORY,
    check_writable,
    data_fingerprint,
    open_run,
    restore_optimizer,
    run_files,
    run_settings,
    write_checkpoint,
    write_json,
)
from .devices import import_keras
from .errors import InputError
from .io import refuse_overwriting_inputs
from .losses import voxel_scores
from .model import (
    build_unet,
    check_weights_file,
    load_model,
    metadata_path,
    read_metadata,
    resolve_precision,
    save_model,
)
from .multi_device import mirrored_strategy
from .particles import ParticleTable
from .sampling import cut_batches, training_batches
from .settings import SettingError, TrainingSettings
from .spectrum import PROFILE_KEY, mean_amplitude_profile
from .training_data import PatchSource, open_sources, validation_patches
from .training_step import training_steps

PathLike = str | os.PathLike

log = logging.getLogger(__name__)

NORMALISATION = "per-tomogram mean and standard deviation (deepfinder.core.normalize.tomogram_stats)"


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
        :mod:`deepfinder.core.checkpoints`).
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
        Angstrom per voxel of the training tomograms; the model's, stored with
        it, is ``settings.binning`` times this. Particle positions and label
        maps are at the tomograms' voxel size whatever the binning.
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

    The network runs on the Keras backend chosen by ``KERAS_BACKEND``
    (TensorFlow by default; JAX and PyTorch too). With several GPUs visible to
    TensorFlow, training is spread over all of them
    (:func:`~deepfinder.core.multi_device.mirrored_strategy`): each step splits
    the batch of ``settings.batch_size`` patches between the devices, and the
    loss and its gradient are those of the whole batch, so the training is that
    of one device up to floating-point reduction order.
    Checkpoints do not depend on the number of devices: a run continues on
    more or fewer of them.
    """
    _check_inputs(n_classes, settings, validation_fraction, class_names)
    refuse_overwriting_inputs(
        [out_dir, *run_files(Path(out_dir))],
        [*tomograms, *label_maps, *validation_tomograms, *validation_label_maps, initial_weights],
    )
    out_dir = Path(out_dir)
    model_voxel_size = voxel_size * settings.binning
    data, validation = open_sources(
        (tomograms, label_maps, particles),
        (validation_tomograms, validation_label_maps, validation_particles),
        validation_fraction,
        n_classes,
        settings,
    )
    _check_initial_weights(initial_weights, n_classes)
    check_writable(out_dir)
    class_names = (
        list(class_names) if class_names else [f"class {c}" if c else "background" for c in range(n_classes)]
    )
    fingerprint = {
        "settings": run_settings(settings, n_classes, class_names, model_voxel_size, validation_fraction),
        "training": data_fingerprint(tomograms, label_maps, particles),
        "validation": data_fingerprint(validation_tomograms, validation_label_maps, validation_particles),
    }
    history, progress, state = open_run(out_dir, fingerprint, resume)
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
    # Loads the Keras backend (and looks for GPUs): after every check.
    precision = resolve_precision(settings.precision)
    keras = import_keras()
    strategy = mirrored_strategy()
    _check_device_split(strategy, settings.batch_size)
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        # Seeds Keras' weight initialisers (a process-wide setting) so that a run is repeatable.
        keras.utils.set_random_seed(settings.seed)
        model = build_unet(n_classes, settings.patch_size, precision)
        optimizer = keras.optimizers.Adam(learning_rate=settings.learning_rate, beta_1=0.9, beta_2=0.999)
        optimizer.build(model.trainable_variables)
    if state is not None:
        if initial_weights is not None:
            warnings.warn(f"Resuming from the checkpoint in {out_dir}: initial_weights ignored", stacklevel=2)
        model.load_weights(out_dir / state["weights"])
        restore_optimizer(optimizer, out_dir / state["optimizer_state"])
    elif initial_weights is not None:
        model.set_weights(_load_initial_weights(initial_weights, n_classes))
    train_step, validation_step = training_steps(model, optimizer, settings.loss, n_classes, strategy)

    validation_origins = validation_patches(validation, settings) if validation is not None else None
    metadata = {
        **dataclasses.asdict(settings),
        "n_classes": n_classes,
        "precision": precision,
        "class_names": class_names,
        "voxel_size": model_voxel_size,
        "normalisation": NORMALISATION,
        PROFILE_KEY: mean_amplitude_profile(data.volumes).tolist(),
        "tomograms": [str(t) for t in tomograms],
        "initial_weights": str(initial_weights) if initial_weights else None,
    }
    for epoch in range(progress.epoch + 1, settings.epochs + 1):
        started = time.perf_counter()
        step_size = learning_rate_at(
            epoch, settings.epochs, settings.learning_rate, settings.final_learning_rate
        )
        optimizer.learning_rate.assign(step_size)
        row = {"epoch": epoch, **_train_epoch(train_step, data, settings, epoch), "learning_rate": step_size}
        if validation is not None:
            row.update(_validate(validation_step, validation, validation_origins, settings, n_classes))
        row["seconds"] = time.perf_counter() - started
        history.append(row)

        score = row["val_mean_f1"] if validation is not None else -row["train_loss"]
        if progress.best_score is None or score > progress.best_score:
            progress.best_epoch, progress.best_score = epoch, score
            save_model(model, out_dir / BEST, _best_metadata(metadata, row, epoch, validation))
        progress.epoch = epoch
        write_checkpoint(
            model, optimizer, out_dir, {**metadata, **dataclasses.asdict(progress)}, fingerprint, history
        )
        write_json(out_dir / HISTORY, history)
        log.info(_summary(row, progress.best_epoch))
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)

    best_meta = metadata_path(out_dir / BEST)
    write_json(best_meta, {**json.loads(best_meta.read_text()), "epochs_trained": progress.epoch})
    return out_dir / BEST


def _train_epoch(train_step: Callable, data: PatchSource, settings: TrainingSettings, epoch: int) -> dict:
    """One epoch's training steps: its mean ``train_loss``, ``data_wait_seconds`` (time the steps
    waited for batches) and ``step_seconds`` (time in steps)."""
    batches = training_batches(
        data.volumes,
        data.labels,
        data.stats,
        data.tomo_index,
        data.centres,
        data.class_ids,
        patch_size=settings.patch_size,
        batch_size=settings.batch_size,
        n_batches=settings.steps_per_epoch,
        rng=np.random.default_rng([settings.seed, epoch]),
        bootstrap=settings.bootstrap,
        shift_voxels=settings.shift_voxels,
        rotations=settings.rotations,
        added_noise=settings.added_noise,
    )
    # Plain lines, not a terminal progress bar, so that log files stay readable.
    steps, report_every = settings.steps_per_epoch, max(1, settings.steps_per_epoch // 10)
    losses, waited, stepped = [], 0.0, 0.0
    with contextlib.closing(batches):  # stops the cutting threads when a step raises, too
        for step in range(1, steps + 1):
            tick = time.perf_counter()
            x, y = next(batches)
            tock = time.perf_counter()
            losses.append(train_step(x, y))
            waited += tock - tick
            stepped += time.perf_counter() - tock
            if step % report_every == 0 or step == steps:
                log.info(
                    "epoch %d/%d step %d/%d: loss %.4f, %.2f s/step",
                    epoch,
                    settings.epochs,
                    step,
                    steps,
                    np.mean(losses),
                    stepped / step,
                )
    if not all(math.isfinite(v) for v in losses):
        raise FloatingPointError(
            f"The training loss became {losses[-1]} at epoch {epoch}: lower the learning rate"
        )
    return {"train_loss": float(np.mean(losses)), "data_wait_seconds": waited, "step_seconds": stepped}


def _check_device_split(strategy, batch_size: int) -> None:
    """Say how each batch is split between several devices; refuse a batch too small to split."""
    if strategy is None:
        return
    n_devices = strategy.num_replicas_in_sync
    if batch_size < n_devices:
        raise SettingError(
            "batch_size",
            f"{batch_size} patches cannot be split between the {n_devices} devices that train "
            f"together: give at least {n_devices}, or fewer GPUs",
        )
    log.info(
        "training on %d devices (%s): each batch of %d patches split %s",
        n_devices,
        ", ".join(device.rpartition("device:")[2] for device in strategy.extended.worker_devices),
        batch_size,
        " + ".join(str(len(part)) for part in np.array_split(np.arange(batch_size), n_devices)),
    )


def learning_rate_at(
    epoch: int, epochs: int, learning_rate: float, final_learning_rate: float | None = None
) -> float:
    """Adam step size of 1-based ``epoch``: geometric from the first to the final one."""
    if final_learning_rate is None or epochs == 1:
        return learning_rate
    return float(learning_rate * (final_learning_rate / learning_rate) ** ((epoch - 1) / (epochs - 1)))


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


def _validate(
    validation_step: Callable, validation: PatchSource, origins, settings: TrainingSettings, n_classes: int
) -> dict:
    tomo_index, corners = origins
    batch_size = settings.batch_size
    plans = (
        (tomo_index[start : start + batch_size], corners[start : start + batch_size], None)
        for start in range(0, len(tomo_index), batch_size)
    )
    batches = cut_batches(validation.volumes, validation.labels, validation.stats, plans, settings.patch_size)
    losses = []
    counts = np.zeros((3, n_classes))
    with contextlib.closing(batches):
        for x, y in batches:
            value, batch_counts = validation_step(x, y)
            losses.append(value)
            counts += batch_counts
    scores = voxel_scores(*counts)
    particle_f1 = scores["f1"][1:]
    return {
        "val_loss": float(np.mean(losses)),
        **{f"val_{name}": _json_list(values) for name, values in scores.items()},
        "val_mean_f1": float(np.nanmean(particle_f1)) if np.isfinite(particle_f1).any() else 0.0,
    }


def _json_list(values: np.ndarray) -> list:
    return [float(v) if np.isfinite(v) else None for v in values]


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
