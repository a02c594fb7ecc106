"""The files of a training run in its output folder: checkpoints, history, best model, resume.

After every epoch, :func:`deepfinder.core.train.train` writes to its output folder:

- ``best.weights.h5`` + ``best.json``: the model of the epoch with the best
  validation score, loadable with :func:`deepfinder.core.model.load_model`;
- ``checkpoint-NNNN.weights.h5`` (+ its ``.json``) and
  ``checkpoint-NNNN.optimizer.npz``: the model and Adam's moments after epoch
  NNNN (:func:`last_checkpoint`);
- ``checkpoint.json``: the run's state, replaced in one step once the files it
  names are complete: the last completed epoch, the best one and its score, the
  history, and the fingerprint of the run's data and settings;
- ``history.json``: a list with one row per epoch, a copy of the checkpoint's
  history for plots.

A kill at any moment loses at most the epoch in progress: ``checkpoint.json``
always names the whole files of one epoch. A run is only continued with the same
data (identified by content, not by path, so a moved project still resumes) and
the same settings, except those of
:data:`~deepfinder.core.settings.RESUMABLE_TRAINING_SETTINGS` (:func:`open_run`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .devices import import_keras
from .errors import InputError
from .io import atomic_output, read_volume
from .model import metadata_path, save_model
from .settings import RESUMABLE_TRAINING_SETTINGS, TrainingSettings

PathLike = str | os.PathLike


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


class TrainingFolderError(InputError):
    """The output folder cannot take this training: not writable, or holding another run."""


@dataclass
class Progress:
    """Where a training run is: last completed epoch, best epoch and its score."""

    epoch: int = 0
    best_epoch: int | None = None
    best_score: float | None = None


def open_run(out_dir: Path, fingerprint: dict, resume: bool) -> tuple[list[dict], Progress, dict | None]:
    """The history, progress and checkpoint state (None: a new run) that training in ``out_dir``
    starts from: those of its checkpoint when ``resume`` (refused if of other data or settings,
    :class:`TrainingFolderError`), else nothing, the folder's run removed."""
    if not resume:
        _remove_run(out_dir)
        return [], Progress(), None
    state = _read_checkpoint(out_dir, fingerprint)
    _remove_leftovers(out_dir, state)
    if state is None:
        return [], Progress(), None
    # A kill after the checkpoint and before history.json left it a row short.
    write_json(out_dir / HISTORY, state["history"])
    return state["history"], Progress(state["epoch"], state["best_epoch"], state["best_score"]), state


def last_checkpoint(out_dir: PathLike) -> Path:
    """The weights of the last completed epoch of the training in ``out_dir`` (loadable with
    :func:`deepfinder.core.model.load_model`)."""
    state_file = Path(out_dir) / CHECKPOINT_STATE
    if not state_file.exists():
        raise FileNotFoundError(f"{out_dir} holds no training checkpoint ({CHECKPOINT_STATE})")
    return Path(out_dir) / json.loads(state_file.read_text())["weights"]


def write_checkpoint(
    model, optimizer, out_dir: Path, metadata: dict, fingerprint: dict, history: list[dict]
) -> None:
    """Save the model and optimizer after epoch ``metadata["epoch"]``, then the state naming them.

    The state file is replaced in one step once the epoch's files are complete, and the
    previous epoch's files are removed only after it, so that it always names whole files.
    """
    stem = f"checkpoint-{metadata['epoch']:04d}"
    weights, optimizer_state = out_dir / f"{stem}.weights.h5", out_dir / f"{stem}.optimizer.npz"
    save_model(model, weights, metadata)
    ops = import_keras().ops
    np.savez(optimizer_state, *[ops.convert_to_numpy(v) for v in optimizer.variables])
    state = {
        **metadata,
        "weights": weights.name,
        "optimizer_state": optimizer_state.name,
        "fingerprint": fingerprint,
        "history": history,
    }
    write_json(out_dir / CHECKPOINT_STATE, state)
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


def run_files(out_dir: Path) -> list[Path]:
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


def restore_optimizer(optimizer, path: Path) -> None:
    with np.load(path) as saved:
        arrays = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    variables = optimizer.variables
    if len(arrays) != len(variables) or any(a.shape != tuple(v.shape) for a, v in zip(arrays, variables)):
        raise TrainingFolderError(f"{path} does not match this model's optimizer: {START_AFRESH}")
    for variable, array in zip(variables, arrays):
        # The step size is the caller's, not the checkpoint's, so it can be changed on resume.
        if "learning_rate" not in variable.path:
            variable.assign(array)


def check_writable(out_dir: Path) -> None:
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


def write_json(path: Path, content) -> None:
    """Write JSON through a temporary file so a crash never leaves a truncated file."""
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(content, indent=1))


def run_settings(settings: TrainingSettings, n_classes, class_names, voxel_size, validation_fraction) -> dict:
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


def data_fingerprint(tomograms, label_maps, particles) -> list[dict]:
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


# What a checkpoint made before a setting existed was trained with.
SETTINGS_BEFORE_THEY_EXISTED = {"rotations": "tilt_axis", "added_noise": 0.0, "binning": 1}


def _differences(saved: dict, current: dict) -> list[str]:
    """What differs between a checkpoint's fingerprint and this run's, one phrase each."""
    saved_settings = {**SETTINGS_BEFORE_THEY_EXISTED, **saved["settings"]}
    differences = [
        f"{name} {current['settings'].get(name)!r} (the checkpoint's: {saved_settings.get(name)!r})"
        for name in sorted(set(saved_settings) | set(current["settings"]))
        if saved_settings.get(name) != current["settings"].get(name)
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
