"""The settings of each stage: targets, training, segmentation, clustering, evaluation.

Each setting is a field of a frozen dataclass that holds its default and, in the
field's metadata, its help text; the class's ``check()`` refuses values the
engine cannot use, naming the setting and the fix. The engine functions take
these objects; the command line (:mod:`deepfinder.core.cli`) and the Scipion
forms read their defaults and help texts from them (:func:`default_of`,
:func:`help_of`), so the three interfaces agree. A protocol hands an engine process its
settings as a JSON file (:func:`write_settings`, read by the command's ``--settings``).
Measured effects of the settings are in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .io import atomic_output

POOLING_FACTOR = 4  # the U-net pools twice by 2: patch edges are multiples of 4
PRECISIONS = ("auto", "float32", "bfloat16")
LOSSES = ("dice", "cross_entropy", "dice_cross_entropy")
ROTATIONS = ("tilt_axis", "three_axes")
BINNINGS = (1, 2)  # training at the tomograms' voxel size, or at twice it (a coarse model)
AUTOMATIC_THRESHOLD = "auto"  # the threshold setting's value for a cut found per tomogram
DEFAULT_MIN_SIZE_FRACTION = 0.3  # of a ball of the class radius: smaller clusters are specks
# Tile edge of automatic tiling: memory grows with its cube (benchmarks/RESULTS.md).
AUTOMATIC_TILE_SIZE = 128
# Reach of an output voxel into the input, +- voxels, pooling-grid offsets included: an input
# voxel changes outputs from 34 voxels before it to 31 after (measured with He-initialised
# weights; Glorot ones damp the outer reach below float round-off). A crop this large makes
# tiling exact.
RECEPTIVE_FIELD_RADIUS = 34


class SettingError(InputError):
    """A value the engine refuses, with the name of the setting (``setting``) and the fix."""

    def __init__(self, setting: str, problem: str):
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


def _setting(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def default_of(settings_class: type, name: str) -> Any:
    """Default value of the setting ``name`` of a settings class."""
    return _field(settings_class, name).default


def help_of(settings_class: type, name: str) -> str:
    """Help text of the setting ``name`` of a settings class."""
    return _field(settings_class, name).metadata["help"]


def _field(settings_class: type, name: str) -> dataclasses.Field:
    fields = {f.name: f for f in dataclasses.fields(settings_class)}
    if name not in fields:
        raise KeyError(f"{settings_class.__name__} has no setting {name!r}")
    return fields[name]


def write_settings(path: str | os.PathLike, settings) -> Path:
    """Write a settings object as JSON, for the ``--settings`` option of the command line.

    ``{"kind": <class name>, "settings": {<name>: <value>, ...}}``; written whole or not at all.
    """
    document = {"kind": type(settings).__name__, "settings": dataclasses.asdict(settings)}
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(document, indent=2) + "\n")
    return Path(path)


def read_settings(path: str | os.PathLike, settings_class: type):
    """The settings object of ``settings_class`` in the JSON file ``path`` (see :func:`write_settings`).

    Settings the file does not name keep their defaults. Raises :class:`InputError` naming the file
    for unreadable JSON, settings of another stage or a name the stage has no setting for.
    """
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InputError(f"{path}: cannot read the settings: {error}") from error
    kind = settings_class.__name__
    if not isinstance(document, dict) or document.get("kind") != kind:
        raise InputError(f"{path}: not a file of {kind}: give the settings file of this command")
    values = document.get("settings")
    names = {f.name for f in dataclasses.fields(settings_class)}
    if not isinstance(values, dict):
        raise InputError(f"{path}: no 'settings' object: give the settings file of this command")
    unknown = sorted(set(values) - names)
    if unknown:
        raise InputError(f"{path}: {kind} has no setting {', '.join(unknown)}: remove it from the file")
    return settings_class(**values)


# --------------------------------------------------------------------------- rules used by several settings


def check_patch_size(patch_size: int, setting: str = "patch_size") -> int:
    """Return ``patch_size`` if the U-net accepts patches of this edge, else raise :class:`SettingError`."""
    if int(patch_size) != patch_size or patch_size < POOLING_FACTOR or patch_size % POOLING_FACTOR:
        lower = max(POOLING_FACTOR, int(patch_size) // POOLING_FACTOR * POOLING_FACTOR)
        raise SettingError(
            setting,
            f"{patch_size} is not a multiple of 4: use {lower} or {lower + POOLING_FACTOR} "
            "(the U-net pools twice by 2)",
        )
    return int(patch_size)


def _check_whole(settings, name: str, minimum: int) -> None:
    value = getattr(settings, name)
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise SettingError(name, f"must be a whole number >= {minimum}, got {value}")


def _check_choice(settings, name: str, choices: Sequence[str]) -> None:
    value = getattr(settings, name)
    if value not in choices:
        raise SettingError(name, f"unknown value {value!r}: use one of {', '.join(map(str, choices))}")


def split_values(text: str | None) -> list[str]:
    """The values of a text field such as ``"120, 60"`` (commas or semicolons)."""
    return [value.strip() for value in (text or "").replace(";", ",").split(",") if value.strip()]


def per_class(
    values: Sequence[str],
    classes: Sequence[int],
    setting: str,
    kind: Callable[[str], Any] = float,
    every_class: bool = False,
) -> dict[int, Any]:
    """{class id: value} of a per-class setting given as text.

    Parameters
    ----------
    values : sequence of str
        One value for every class (``["6"]``), one per class in the order of
        ``classes`` (``["6", "9"]``), or ``CLASS:VALUE`` pairs (``["1:6", "2:9"]``).
    classes : sequence of int
        The class ids the values are for.
    setting : str
        Name of the setting, for the error message.
    kind : callable
        Converts each value (``float``, ``int``, ``str``...).
    every_class : bool
        Refuse ``CLASS:VALUE`` pairs that leave a class of ``classes`` without a value.

    Raises
    ------
    SettingError
        Values that are neither of the three forms, that ``kind`` refuses, or
        (with ``every_class``) that miss a class.
    """
    values, classes = list(values), [int(c) for c in classes]

    def convert(value: str):
        try:
            return kind(value.strip())
        except (TypeError, ValueError) as error:
            raise SettingError(setting, f"cannot read {value!r}: {error}") from error

    if any(":" in value for value in values):
        pairs = {}
        for value in values:
            class_id, sep, rest = value.partition(":")
            if not sep or not class_id.strip().isdigit():
                raise SettingError(setting, f"give CLASS:VALUE pairs (e.g. 1:6), got {value!r}")
            pairs[int(class_id)] = convert(rest)
        missing = sorted(set(classes) - set(pairs)) if every_class else []
        if missing:
            raise SettingError(
                setting,
                f"no value for class(es) {missing}: give CLASS:VALUE for each of the classes {classes}, "
                "or one value for all",
            )
        return pairs
    if len(values) == 1 and classes:
        return {c: convert(values[0]) for c in classes}
    if len(values) == len(classes):
        return {c: convert(value) for c, value in zip(classes, values)}
    raise SettingError(
        setting,
        f"give one value, one per class ({len(classes)}: {classes}) or CLASS:VALUE pairs; got {values}",
    )


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class TargetSettings:
    """Settings of painting training label maps (:mod:`deepfinder.core.targets`)."""

    mask_threshold: float = _setting(
        0.5,
        "Voxels of a class's shape volume above this value are the particle: 0.5 suits binary "
        "masks; for a subtomogram average, pick a contour level of its density.",
    )

    def check(self) -> None:
        """Raise :class:`SettingError` for a value the engine cannot use."""
        if not math.isfinite(self.mask_threshold):
            raise SettingError("mask_threshold", f"must be a finite number, got {self.mask_threshold}")


# --------------------------------------------------------------------------- training


_PRECISION_HELP = (
    "Arithmetic of the network: auto runs in mixed bfloat16 (weights and softmax in float32) on "
    "NVIDIA GPUs of compute capability 8.0 or later and on CPUs that compute bfloat16 natively, "
    "where it is faster, else in float32; float32 and bfloat16 force one."
)


@dataclass(frozen=True)
class TrainingSettings:
    """Settings of training the U-net (:func:`deepfinder.core.train.train`).

    The defaults suit a CPU of a few cores (the ``cpu`` preset of
    :data:`TRAINING_PRESETS`); the ``gpu`` preset holds the paper's settings.
    """

    patch_size: int = _setting(
        48,
        "Edge of the cubic training patches in voxels, a multiple of 4, about 1.5 to 3 times the "
        "largest particle diameter (the paper used 56); more than twice the random shift. "
        "Smaller patches give more steps in the same time, which counts more in a short training.",
    )
    batch_size: int = _setting(
        8,
        "Patches per training step (the paper: 25 on a GPU). With class balancing, at least the "
        "number of particle classes, so that every batch holds each class; twice that number "
        "names look-alike classes better, for twice the time per step on a CPU.",
    )
    epochs: int = _setting(30, "Number of epochs; the model is saved after each one.")
    steps_per_epoch: int = _setting(50, "Training batches per epoch (the paper: 100).")
    validation_steps: int = _setting(
        10,
        "Validation batches per epoch: the same patches every epoch, so that epochs compare.",
    )
    loss: str = _setting(
        "dice_cross_entropy",
        "dice: soft Dice over the classes (the paper's), weighs small classes as much as large "
        "ones but is slow to start; cross_entropy: voxel-wise categorical; dice_cross_entropy: "
        "their sum, learns every class early and tolerates a learning rate of 1e-3.",
    )
    learning_rate: float = _setting(
        1e-4,
        "Adam step size. The paper's 1e-4 is safe with every loss; with dice_cross_entropy, 1e-3 "
        "learns faster in short runs, while with dice alone it can collapse to all-background.",
    )
    final_learning_rate: float | None = _setting(
        None,
        "Step size of the last epoch: it decays geometrically from the learning rate to this "
        "value (large steps early, fine ones at the end). None (0 in the Scipion form): a "
        "constant step size.",
    )
    bootstrap: bool = _setting(
        True,
        "Balance classes: each batch holds the particle classes in equal numbers (else particles "
        "are drawn by abundance).",
    )
    shift_voxels: int = _setting(
        13,
        "Patch centres move by up to this many voxels per axis from their particle; keep it "
        "below half the patch size.",
    )
    rotations: str = _setting(
        "tilt_axis",
        "Rotations of the training patches by 180 degrees, which keep the missing wedge and the "
        "particles' hand: tilt_axis: half of them about the tilt axis (the paper's); three_axes: a "
        "quarter each unturned and about z, y and x (the rotations that segmentation's "
        "average_rotations averages over), better on look-alike classes in a long training.",
    )
    added_noise: float = _setting(
        0.0,
        "Largest standard deviation of the white noise added to each training patch, in units of "
        "the tomogram's (each patch draws its own, uniformly from 0 to this; the patch keeps unit "
        "variance): trains on lower SNRs than the training tomograms have, for tomograms imaged "
        "with less dose, thicker ice or another defocus. 1 halves the SNR at most; 0: no noise.",
    )
    binning: int = _setting(
        1,
        "2: train at twice the voxel size, on the tomograms binned by 2 (means of 2x2x2 voxels) "
        "with their label maps binned too (a voxel takes the class holding at least half of its "
        "8 voxels) and the particle positions halved: a coarse model for segmentation, trained "
        "from the same inputs as the full-size model it is paired with. Patch size and shift are "
        "then in binned voxels. 1: the tomograms as they are.",
    )
    seed: int = _setting(
        0,
        "Fixes the initial weights and the patches drawn, so that a run can be repeated (it sets "
        "the process-wide seeds of Python, numpy and TensorFlow).",
    )
    precision: str = _setting("auto", _PRECISION_HELP)

    def check(self) -> None:
        """Raise :class:`SettingError` for a value the engine cannot use."""
        check_patch_size(self.patch_size)
        _check_whole(self, "batch_size", 1)
        _check_whole(self, "epochs", 1)
        _check_whole(self, "steps_per_epoch", 1)
        _check_whole(self, "validation_steps", 1)
        _check_choice(self, "loss", LOSSES)
        if not self.learning_rate > 0:
            raise SettingError("learning_rate", f"must be > 0, got {self.learning_rate}")
        if self.final_learning_rate is not None and not self.final_learning_rate > 0:
            raise SettingError(
                "final_learning_rate",
                f"must be > 0 (or None for a constant step size), got {self.final_learning_rate}",
            )
        _check_whole(self, "shift_voxels", 0)
        _check_choice(self, "rotations", ROTATIONS)
        if not 0 <= self.added_noise <= 10:
            raise SettingError("added_noise", f"must be between 0 (none) and 10, got {self.added_noise}")
        _check_choice(self, "binning", BINNINGS)
        _check_whole(self, "seed", 0)
        _check_choice(self, "precision", PRECISIONS)

    def warnings(self, n_particle_classes: int) -> list[str]:
        """Settings that train, but badly, each with its fix (measured in benchmarks/RESULTS.md).

        Parameters
        ----------
        n_particle_classes : int
            Classes without the background.
        """
        messages = []
        if self.bootstrap and self.batch_size < n_particle_classes:
            messages.append(
                f"The batch size ({self.batch_size}) is smaller than the {n_particle_classes} "
                "particle classes: batches miss some classes and similar classes get mixed up; "
                f"use a batch of at least {n_particle_classes}."
            )
        if 2 * self.shift_voxels >= self.patch_size:
            messages.append(
                f"The random shift ({self.shift_voxels} voxels) is at least half the patch size "
                f"({self.patch_size}): some patches miss the particle they were drawn for; use a "
                f"shift below {self.patch_size // 2}."
            )
        return messages


#: Settings of :class:`TrainingSettings` that may change when a training run is resumed:
#: they change how the remaining epochs train, not what the weights or the history rows
#: mean. Any other setting (patch and batch size, loss, shift, seed, validation steps: the
#: latter four also fix the validation patches) belongs to the run, and a checkpoint made
#: with other values is refused (:func:`deepfinder.core.train.train`).
RESUMABLE_TRAINING_SETTINGS = frozenset(
    {"epochs", "steps_per_epoch", "learning_rate", "final_learning_rate", "bootstrap", "precision"}
)


#: Named overrides of :class:`TrainingSettings` that fit the hardware or a first try. ``cpu``:
#: the defaults, for a few cores. ``gpu``: the paper's settings (batch 25, patch 56, 100 steps
#: per epoch), for particles up to a radius of about 10 voxels. ``quick``: a first model of
#: small particles (radius up to about 8 voxels) in minutes on 2 CPU cores, as the demo workflow
#: (:class:`deepfinder.workflow.TrainFormValues`) and the tests and benchmarks that learn the
#: simulator's presets train: dice_cross_entropy at 1e-3 learns thin shapes within ~100 steps,
#: where dice alone at 1e-4 has not left the all-background start; patches of 32 with a shift
#: of 6 keep a 22-voxel rod inside the patch.
TRAINING_PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {},
    "gpu": {"patch_size": 56, "batch_size": 25, "steps_per_epoch": 100, "validation_steps": 10},
    "quick": {
        "patch_size": 32,
        "batch_size": 4,
        "epochs": 20,
        "steps_per_epoch": 16,
        "validation_steps": 2,
        "loss": "dice_cross_entropy",
        "learning_rate": 1e-3,
        "shift_voxels": 6,
    },
}


def training_preset(name: str, **changes) -> TrainingSettings:
    """The training settings of preset ``name`` (:data:`TRAINING_PRESETS`), with ``changes``."""
    if name not in TRAINING_PRESETS:
        raise SettingError("preset", f"unknown preset {name!r}: use one of {', '.join(TRAINING_PRESETS)}")
    return dataclasses.replace(TrainingSettings(), **{**TRAINING_PRESETS[name], **changes})


# --------------------------------------------------------------------------- segmentation


@dataclass(frozen=True)
class SegmentationSettings:
    """Settings of segmenting a tomogram (:func:`deepfinder.core.segment.segment_tomogram`)."""

    patch_size: int = _setting(
        0,
        "Largest edge of the tiles the tomogram is cut into, in voxels, a multiple of 4 (memory "
        f"grows with its cube; larger tiles are faster). 0: {AUTOMATIC_TILE_SIZE}, or the "
        "tomogram's largest edge if smaller.",
    )
    crop_voxels: int = _setting(
        4,
        f"Voxels dropped from each inner side of a tile, where tiles overlap: {RECEPTIVE_FIELD_RADIUS} "
        "(the network's reach) makes tiling exact, smaller crops recompute less: computed / useful "
        "voxels ~ (1 + 2 crop / tile)^3.",
    )
    batch_size: int = _setting(1, "Tiles per forward pass of the network.")
    bin_scores: bool = _setting(
        False,
        "Average the scores over 2x2x2 voxels before labelling: label and score maps are half "
        "size, which makes clustering of large particles faster.",
    )
    average_rotations: bool = _setting(
        False,
        "Also segment the tomogram rotated by 180 degrees about z, y and x (rotations that keep "
        "the missing wedge in place) and average the four predictions: up to 4 times the time, "
        "fewer confusions between look-alike classes, no retraining.",
    )
    match_spectrum: bool = _setting(
        False,
        "First filter the tomogram so that its amplitude spectrum is that of the model's training "
        "tomograms: for tomograms imaged otherwise (another defocus, dose or ice thickness). Needs "
        "memory for three float32 copies of the tomogram, and a model trained by this version.",
    )
    precision: str = _setting("auto", _PRECISION_HELP)

    def check(self) -> None:
        """Raise :class:`SettingError` for a value the engine cannot use (see also
        :func:`deepfinder.core.segment.tiling_for` for a given tomogram)."""
        if self.patch_size:
            try:
                check_patch_size(self.patch_size)
            except SettingError as error:
                raise SettingError("patch_size", f"{error.problem}, or 0 for automatic") from None
        _check_whole(self, "crop_voxels", 0)
        if self.patch_size and self.patch_size - 2 * self.crop_voxels < POOLING_FACTOR:
            raise SettingError(
                "patch_size",
                f"{self.patch_size} leaves no centre after cropping {self.crop_voxels} voxels per "
                f"side: use patch_size >= {2 * self.crop_voxels + POOLING_FACTOR} or a smaller crop",
            )
        _check_whole(self, "batch_size", 1)
        _check_choice(self, "precision", PRECISIONS)


# --------------------------------------------------------------------------- clustering


@dataclass(frozen=True)
class ClusterSettings:
    """Settings of turning a label map into particles (:mod:`deepfinder.core.steps.cluster`).

    The per-class settings (``radius``, ``min_size``, ``bandwidth``, ``threshold``) hold their
    values as given, since a label map's classes are known only once it is read: one value for all
    classes, one per class in class order, or ``CLASS:VALUE`` pairs (:func:`per_class`).
    """

    radius: tuple[str, ...] = _setting(
        (),
        "Particle radius in voxels of the label map, per class: sets the smallest cluster kept, "
        "the size at which a cluster is split and the mean-shift bandwidth. Required.",
    )
    min_size: tuple[str, ...] = _setting(
        (),
        "Smallest cluster kept, in voxels, per class; none given: min_size_fraction "
        f"({DEFAULT_MIN_SIZE_FRACTION}) of a ball of the class radius.",
    )
    bandwidth: tuple[str, ...] = _setting(
        (), "Mean-shift bandwidth in voxels of the label map, per class; none given: the radius."
    )
    threshold: tuple[str, ...] = _setting(
        (),
        "Drop picks scoring below a threshold, per class (kept picks keep their scores); 'auto': "
        "per class, split this tomogram's scores in two populations (Otsu's cut; cluster sizes on "
        "a log scale) when two Gaussians describe them better than one; none given: no cut.",
    )
    min_size_fraction: float = _setting(
        DEFAULT_MIN_SIZE_FRACTION,
        "Without a minimum cluster size for a class, clusters smaller than this fraction of a "
        "ball of the class radius are dropped: segmentation specks and fragments, not particles.",
    )
    split_factor: float = _setting(
        1.5,
        "Clusters larger than this many balls of the class radius hold touching particles and "
        "are split by mean-shift.",
    )
    box_scale: float = _setting(
        2.5,
        "The box size of the output coordinates is this times the particle radius "
        "(2.5: the particle diameter plus a margin).",
    )

    def __post_init__(self) -> None:
        # Per-class values come as lists from JSON files and the command line: held as tuples, so
        # that settings compare equal however they were given.
        for name in ("radius", "min_size", "bandwidth", "threshold"):
            values = getattr(self, name)
            object.__setattr__(self, name, (values,) if isinstance(values, str) else tuple(values))

    def check(self) -> None:
        """Raise :class:`SettingError` for a value the engine cannot use."""
        if not self.min_size_fraction >= 0:
            raise SettingError("min_size_fraction", f"must be >= 0, got {self.min_size_fraction}")
        if not self.split_factor > 0:
            raise SettingError("split_factor", f"must be > 0, got {self.split_factor}")
        if not self.box_scale > 0:
            raise SettingError("box_scale", f"must be > 0, got {self.box_scale}")
        if AUTOMATIC_THRESHOLD in self.threshold and self.threshold != (AUTOMATIC_THRESHOLD,):
            raise SettingError("threshold", f"give {AUTOMATIC_THRESHOLD!r} alone, got {list(self.threshold)}")


# --------------------------------------------------------------------------- evaluation

EVERY_SCORE = -1  # a sweep over every distinct score of the detections


@dataclass(frozen=True)
class EvaluationSettings:
    """Settings of scoring detections against a reference (:mod:`deepfinder.core.steps.evaluate`).

    The matching rule is a distance (``tolerance_voxels``) or, without it, the reference's
    occupancy map, which is a file given beside the tables.
    """

    tolerance_voxels: float | None = _setting(
        None,
        "Distance rule: a detection within this distance in voxels of a reference particle of its "
        "class is a true positive (one-to-one). None: the occupancy rule.",
    )
    sweep: int = _setting(
        0,
        "Also score the detections kept by this many score thresholds (quantiles of their scores), "
        f"to choose a threshold; 0: no sweep, {EVERY_SCORE}: every distinct score.",
    )

    def check(self) -> None:
        """Raise :class:`SettingError` for a value the engine cannot use."""
        if self.tolerance_voxels is not None and not self.tolerance_voxels >= 0:
            raise SettingError("tolerance_voxels", f"must be >= 0, got {self.tolerance_voxels}")
        if self.sweep < EVERY_SCORE:
            raise SettingError("sweep", f"must be >= 0 or {EVERY_SCORE}, got {self.sweep}")
