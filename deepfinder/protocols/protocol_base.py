"""What several DeepFinder protocols share: classes given as coordinate sets, form checks, GPUs."""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import uuid

import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol
from pyworkflow.exceptions import PyworkflowException
from tomo.objects import Coordinate3D

from .. import Plugin
from ..constants import DEEPFINDER_DEVICE
from ..convert import coordinates_to_table, tomograms_by_tsid, unique_values
from ..core.particles import ParticleTable
from ..core.settings import SettingError, default_of, help_of, write_settings

CLASSES_PER_SET = 0
CLASSES_FROM_GROUP_ID = 1


class DeepFinderProtBase(EMProtocol):
    """Base of DeepFinder protocols that take particle classes as coordinate sets."""

    def _defineClassParams(self, form, label="Particles (one set per class)"):
        form.addParam(
            "inputCoordinates",
            params.MultiPointerParam,
            pointerClass="SetOfCoordinates3D",
            label=label,
            important=True,
            help="Coordinates of the particles to learn from. With 'one class per "
            "set', each set is one class, numbered 1, 2, ... in this order.",
        )
        add_classes_from_param(form)
        form.addParam(
            "classNames",
            params.StringParam,
            default="",
            label="Class names (optional)",
            help="Comma-separated, in class order, e.g. 'ribosome, proteasome'. "
            "Empty: the names of the input sets.",
        )

    # ----------------------------------------------------------------- helpers
    def _coordinateSets(self) -> list:
        return [pointer.get() for pointer in self.inputCoordinates]

    def _particleTable(self, sampling_rate: float) -> ParticleTable:
        """All input particles in voxels at ``sampling_rate``, with their class ids."""
        return classes_table(self.inputCoordinates, self.classesFrom.get(), sampling_rate)

    def _numberOfClasses(self) -> int:
        """Particle classes (background excluded)."""
        return number_of_classes(self.inputCoordinates, self.classesFrom.get())

    def _classNamesList(self) -> list[str]:
        """Names of the classes, background first."""
        given = [name.strip() for name in self.classNames.get("").split(",") if name.strip()]
        n = self._numberOfClasses()
        if given:
            names = given
        else:
            labels = [_short_name(pointer.getObjValue().getObjLabel()) for pointer in self.inputCoordinates]
            distinct = self.classesFrom.get() == CLASSES_PER_SET and len(set(labels)) == n and all(labels)
            names = labels if distinct else [f"class{i}" for i in range(1, n + 1)]
        return ["background"] + names

    def _validateClasses(self) -> list[str]:
        errors = []
        given = [name for name in self.classNames.get("").split(",") if name.strip()]
        if given and len(given) != self._numberOfClasses():
            errors.append(
                f"{len(given)} class names given for {self._numberOfClasses()} classes: "
                "give one name per class, or leave 'Class names' empty."
            )
        return errors + group_id_errors(self.inputCoordinates, self.classesFrom.get())


def add_classes_from_param(
    form, name: str = "classesFrom", default: int = CLASSES_PER_SET, label: str = "Classes from"
) -> None:
    """Add the choice of how the coordinate sets of a form are classed: by set or by groupId."""
    form.addParam(
        name,
        params.EnumParam,
        default=default,
        choices=["one class per set", "the coordinates' groupId"],
        display=params.EnumParam.DISPLAY_HLIST,
        label=label,
        help="Each set is one class (1, 2, ... in set order), or the groupId of each coordinate "
        "is its class (groupId 1, 2, ...: one set may hold several classes).",
    )


def number_of_classes(pointers, classes_from: int) -> int:
    """Particle classes of coordinate sets classed by set order or by groupId (background excluded)."""
    if classes_from == CLASSES_PER_SET:
        return len(pointers)
    groups = set()
    for pointer in pointers:
        groups.update(unique_values(pointer.get(), Coordinate3D.GROUP_ID_ATTR))
    return max(groups, default=0)


def group_id_errors(pointers, classes_from: int) -> list[str]:
    """A form error for each coordinate set classed by groupId that has groupId 0."""
    if classes_from != CLASSES_FROM_GROUP_ID:
        return []
    return [
        f"{pointer.get().getNameId()} has coordinates with groupId 0: "
        "groupIds must be 1, 2, ... (0 is the background)."
        for pointer in pointers
        if min(unique_values(pointer.get(), Coordinate3D.GROUP_ID_ATTR), default=1) < 1
    ]


def volumes_without_sampling_rate(volumes, kind: str) -> list[str]:
    """A form error if the set of volumes (``kind``: "tomograms", "label maps") has no sampling rate."""
    if volumes.getSamplingRate():
        return []
    return [f"The {kind} have no sampling rate: set it when importing them."]


def coordinates_without_sampling_rate(coordinate_sets) -> list[str]:
    """A form error for each coordinate set that has no sampling rate."""
    return [
        f"{coords.getNameId()} has no sampling rate: re-import it with one."
        for coords in coordinate_sets
        if not coords.getSamplingRate()
    ]


class EngineError(PyworkflowException):
    """An engine process of a step failed; the message is one line naming the input and the reason."""


class _EngineErrorsWithoutTraceback(logging.Filter):
    """pyworkflow logs the exception of a failed step thread with its traceback: the one line of
    an EngineError says it all (and Scipion's serial executor shows no traceback for it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, EngineError):
            record.msg, record.args, record.exc_info = str(error), (), None
        return True


logging.getLogger("pyworkflow.protocol.executor").addFilter(_EngineErrorsWithoutTraceback())


class DeepFinderEngineProtocol(EMProtocol):
    """A protocol whose steps run engine processes (:func:`run_engine`).

    A failed run's log ends with the reason, one line, after Scipion's closing lines.
    """

    def _endRun(self):
        super()._endRun()
        if self.isFailed():
            self.info(self.getErrorMessage())


def run_engine(
    protocol,
    command: str,
    arguments: list,
    outputs: list[str],
    subject: str,
    uses_gpu: bool = False,
) -> None:
    """Run ``deepfinder <command> <arguments>`` as its own process, from a step of ``protocol``.

    The process is started with ``runJob``, so a protocol that sends its steps to a queue
    sends this command as that step's job. A step that ``uses_gpu`` gets the GPUs its step
    executor hands it (Scipion's ``%(GPU)s`` placeholder): with GPU IDs "0 1" and 3 Scipion
    threads (the main one and one per running step), two steps run at once, one per GPU.
    Without 'Use GPU' (or with the Scipion variable DEEPFINDER_DEVICE=cpu) it runs on the CPU.

    Raises
    ------
    EngineError
        When the process failed or did not write all of ``outputs``: one line starting
        with ``subject`` (e.g. "Tomogram TS_01") and giving the engine's own message, or
        the missing file. A queued job's exit status does not reach Scipion: the engine
        writes its message to a file, and the outputs are checked.
    """
    error_file = protocol._getTmpPath(f"{command}-{uuid.uuid4().hex}.error")
    words = [command, *arguments, "--error-file", error_file]
    line = " ".join(shlex.quote(str(word)) for word in words)
    if uses_gpu:
        if protocol.useGpu.get() and protocol.getGpuList() and Plugin.getVar(DEEPFINDER_DEVICE) != "cpu":
            # Scipion fills the placeholder with the %-operator: escape the other percent signs.
            line = line.replace("%", "%%") + " --gpus %(GPU)s"
        else:
            line += " --gpus none"
    try:
        protocol.runJob(sys.executable, f"-m deepfinder.core.cli {line}")
        failure = None
    except subprocess.CalledProcessError as error:
        failure = f"deepfinder {command} ended with exit status {error.returncode} (see the run's error log)"
    if os.path.exists(error_file):
        with open(error_file, encoding="utf-8") as file:
            failure = file.read().strip()
        os.remove(error_file)
    missing = [path for path in outputs if not os.path.exists(path)]
    if failure is None and missing:
        failure = f"deepfinder {command} wrote no {missing[0]} (see the run's logs)"
    if failure is not None:
        raise EngineError(f"{subject}: {failure}")


def settings_arguments(protocol, name: str, settings) -> list[str]:
    """``--settings FILE`` for :func:`run_engine`: ``settings`` written as JSON in the run's extra folder.

    The file is the only way settings reach the engine process; ``name`` makes it unique to the
    step (steps running at once must not write the same file).
    """
    path = protocol._getExtraPath(f"{name}_settings.json")
    write_settings(path, settings)
    return ["--settings", path]


def add_setting_param(
    form, settings_class: type, form_params: dict[str, str], setting: str, param_class, **options
) -> None:
    """Add the form parameter (named in ``form_params``) of ``setting`` of ``settings_class``.

    It shows the setting's help and defaults to the setting's default, unless ``options`` give
    the form's spelling of that default (e.g. the index of an enum choice); ``options`` give the
    label and the rest.
    """
    options.setdefault("default", default_of(settings_class, setting))
    form.addParam(form_params[setting], param_class, help=help_of(settings_class, setting), **options)


def form_settings(protocol, settings_class: type, form_params: dict[str, str], **values):
    """The settings (``settings_class``) a protocol's form holds.

    ``form_params`` names the form parameter of each setting; ``values`` are
    settings converted from the form (e.g. an enum index into its name).
    """
    from_form = {setting: getattr(protocol, param).get() for setting, param in form_params.items()}
    return settings_class(**{**from_form, **values})


def settings_errors(protocol, settings, form_params: dict[str, str]) -> list[str]:
    """The form error of a setting the engine refuses, named by its form label (units dropped)."""
    try:
        settings.check()
    except SettingError as error:
        param = form_params.get(error.setting)
        label = protocol.getParam(param).getLabel() if param else error.setting
        return [f"{re.sub(r' [(].*[)]$', '', label)} {error.problem}."]
    return []


def classes_table(pointers, classes_from: int, sampling_rate: float) -> ParticleTable:
    """Particles of several coordinate sets, classed by set order or by groupId."""
    per_set = classes_from == CLASSES_PER_SET
    return ParticleTable.concat(
        [
            coordinates_to_table(pointer.get(), sampling_rate, class_id=i + 1 if per_set else None)
            for i, pointer in enumerate(pointers)
        ]
    )


def _short_name(label: str | None) -> str:
    return (label or "").strip().replace(" ", "_").replace(",", "_")


def add_masks_param(form, what: str) -> None:
    """The optional regions of interest of a protocol: one mask per tomogram, matched by tsId."""
    form.addParam(
        "inputMasks",
        params.PointerParam,
        pointerClass="SetOfTomoMasks",
        allowsNull=True,
        label="Regions of interest (optional)",
        help="One mask per tomogram (same tsId), nonzero where particles are searched, e.g. the "
        f"lamella without its carbon or contamination: {what}. Any sampling rate: a mask is "
        "resampled (nearest neighbour) to the tomogram's.",
    )


def mask_errors(masks, ts_ids, kind: str = "Tomogram") -> list[str]:
    """Form errors of the regions of interest ``masks`` (a SetOfTomoMasks or None): no sampling rate
    (the engine resamples each mask from it), and each tsId that has no mask of its tsId."""
    if masks is None:
        return []
    masked = set(tomograms_by_tsid(masks))
    return volumes_without_sampling_rate(masks, "regions of interest") + [
        f"{kind} {ts_id} has no mask of that tsId among the regions of interest: give one mask per "
        "tomogram, or none."
        for ts_id in ts_ids
        if ts_id not in masked
    ]


def mask_arguments(masks, ts_id: str) -> list:
    """The command-line options of the mask of tsId ``ts_id`` in ``masks`` (a SetOfTomoMasks or
    None): its file and its sampling rate, which the engine resamples it from; none without masks."""
    if masks is None:
        return []
    mask = tomograms_by_tsid(masks)[ts_id]
    return ["--mask", mask.getFileName(), "--mask-voxel-size", mask.getSamplingRate()]
