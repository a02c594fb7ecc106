"""The whole DeepFinder chain in a Scipion project, on a simulated dataset.

Used by the README's main job (scripts/demo.py) and by the protocol tests, so
both run exactly the same chain: import tomograms -> import particles (with
orientations) and class shapes -> generate targets -> train -> segment ->
cluster -> evaluate. On data with regions of interest (the ``lamella`` preset),
:func:`four_ways_report` clusters the held-out tomograms again with an automatic
score threshold, a mask, or both (and, given the model, segments them within the
mask), and compares the ways.

Each protocol is logged (logger ``deepfinder.workflow``, INFO) as it starts and
ends, and every :data:`PROGRESS_SECONDS` while it runs, with the latest line of
its run log (epoch and loss, tiles done...).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pwem.protocols import ProtImportVolumes
from pyworkflow.project import Manager, Project
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms, ProtImportTomomasks

from .convert import coordinates_to_table
from .core.evaluate import ClassScores, format_table, match_by_distance, precision_recall_f1
from .core.io import read_volume, read_voxel_size
from .core.particles import ParticleTable
from .core.roi import positions_inside
from .core.settings import ClusterSettings, default_of, training_preset
from .core.simulate import simulate_dataset
from .core.tables import csv as particle_csv
from .protocols import (
    DeepFinderProtCluster,
    DeepFinderProtEvaluate,
    DeepFinderProtGenerateTargets,
    DeepFinderProtImportParticles,
    DeepFinderProtSegment,
    DeepFinderProtTrain,
)
from .protocols.protocol_base import CLASSES_FROM_GROUP_ID
from .protocols.protocol_cluster import THRESHOLD_AUTOMATIC, THRESHOLD_NONE
from .protocols.protocol_targets import SHAPES

logger = logging.getLogger(__name__)

# The view of tomo's protocols.conf, where this plugin's protocols are listed too.
TOMOGRAPHY_VIEW = "Tomography"
PROGRESS_SECONDS = 10
PROGRESS_CHARACTERS = 110
#: A pick within this distance of a true particle of its class is a true positive (voxels).
TOLERANCE_VOXELS = 6
#: The ways :func:`cluster_four_ways` clusters: name -> (automatic score threshold, regions of interest).
CLUSTER_WAYS = {
    "no threshold, no mask": (False, False),
    "automatic threshold": (True, False),
    "mask": (False, True),
    "mask + automatic threshold": (True, True),
}
#: The way :func:`four_ways_report` adds with a model: segmented and clustered within the mask.
MASKED_SEGMENTATION = "mask in segment and cluster"
_COMPLETE_MARK = ".generated"
_COLOUR_CODE = re.compile(r"\x1b\[[0-9;]*m")
# Scipion's line at each step's start and end, e.g. "STARTED: trainStep, step 1, time 2026-12-02 ...".
_STEP_MARKER = re.compile(r"^(?P<event>STARTED|FINISHED|FAILED): (?P<step>\w+), step (?P<number>\d+)")


class SimulatedDataset:
    """A simulated dataset in a folder, written on first use.

    Holds the tomograms ``tomo_000.mrc``... (with the ``lamella`` preset, their
    regions of interest ``tomo_000_mask.mrc``...), their ground truth
    (``tomo_000_particles.csv``, label and occupancy maps), ``classes.json``,
    class shape masks, and per-class coordinate files ``class<k>/tomo_000.txt``
    (x y z in voxels) that tomo's "import coordinates 3D" reads.

    Parameters
    ----------
    path : path
        The dataset's folder.
    preset : str
        A simulator preset (``tiny``, ``demo``, ``lamella``); the dataset has its default number of tomograms.
    seed : int
        The simulator's seed.
    """

    def __init__(self, path: str | os.PathLike, preset: str, seed: int = 0):
        self.path, self.preset, self.seed = str(path), preset, seed

    def getPath(self) -> str:
        """The dataset's folder, simulated first if needed (pyworkflow's DataSet naming)."""
        self.ensure()
        return self.path

    def classes(self) -> list[dict]:
        """The simulated classes: id, name, radius_voxels, mask file."""
        return json.loads(Path(self.getPath(), "classes.json").read_text())

    def voxel_size(self) -> float:
        """Voxel size of the simulated tomograms, in Angstrom."""
        return read_voxel_size(Path(self.getPath(), "tomo_000.mrc"))

    def ensure(self) -> None:
        """Simulate the dataset unless a complete one is already in the folder."""
        folder = Path(self.path)
        if (folder / _COMPLETE_MARK).exists():
            return
        simulate_dataset(folder, preset=self.preset, seed=self.seed)
        for csv in sorted(folder.glob("*_particles.csv")):
            particles = particle_csv.read(csv).particles
            tomo = csv.name[: -len("_particles.csv")]
            for class_id in np.unique(particles.class_id):
                class_folder = folder / f"class{class_id}"
                class_folder.mkdir(exist_ok=True)
                np.savetxt(class_folder / f"{tomo}.txt", particles.of_class(class_id).xyz, fmt="%.2f")
        (folder / _COMPLETE_MARK).touch()


_QUICK = training_preset("quick")


@dataclass
class TrainFormValues:
    """Values of the train protocol's form that learn the generated presets in minutes on 2 CPU cores:
    the engine's ``quick`` training preset (core.settings.TRAINING_PRESETS).

    The names are the form's parameters (camelCase).
    """

    patchSize: int = _QUICK.patch_size
    batchSize: int = _QUICK.batch_size
    epochs: int = _QUICK.epochs
    stepsPerEpoch: int = _QUICK.steps_per_epoch
    validationSteps: int = _QUICK.validation_steps
    learningRate: float = _QUICK.learning_rate
    shiftVoxels: int = _QUICK.shift_voxels
    extra: dict = field(default_factory=dict)


def create_project(name: str) -> Project:
    """A new Scipion project that opens in the tomography view; an old one of that name is deleted.

    The working directory becomes the project's folder, from which Scipion resolves its files.
    """
    manager = Manager()
    path = Path(manager.getProjectPath(name))
    if path.exists():
        shutil.rmtree(path)
    project = manager.createProject(name)
    # Without a saved view, the GUI opens the first one it reads: pwem's "Protocols SPA".
    project.getSettings().setProtocolView(TOMOGRAPHY_VIEW)
    project.saveSettings()
    os.chdir(project.path)
    return project


def duration(seconds: float) -> str:
    """``42 s`` or ``3 min 05 s``."""
    minutes, seconds = divmod(round(seconds), 60)
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def progress_line(run_log: str) -> str | None:
    """What a running protocol is doing, from the text of its ``logs/run.stdout``.

    The latest line written by a step (e.g. an epoch's loss, the tiles done),
    else the latest step's start or end; None before the first step starts.
    Lines outside steps are Scipion's own bookkeeping and are skipped.
    """
    latest, in_step = None, False
    for line in run_log.splitlines():
        line = _COLOUR_CODE.sub("", line).strip()
        marker = _STEP_MARKER.match(line)
        if marker:
            latest = f"{marker['step']} (step {marker['number']}) {marker['event'].lower()}"
            in_step = marker["event"] == "STARTED"
        elif in_step and line:
            latest = line
    if latest is not None and len(latest) > PROGRESS_CHARACTERS:
        latest = latest[: PROGRESS_CHARACTERS - 3] + "..."
    return latest


def _run_log(project: Project, protocol) -> str:
    """The text of a protocol's ``logs/run.stdout`` so far ("" before the run has a folder)."""
    if not protocol.getWorkingDir():
        return ""
    try:
        return Path(project.path, protocol.getStdoutLog()).read_text(errors="replace")
    except OSError:
        return ""


@contextmanager
def _progress_reports(project: Project, protocol, label: str, started: float) -> Iterator[None]:
    """Log the protocol's :func:`progress_line` every PROGRESS_SECONDS until the block ends."""
    done = threading.Event()

    def report():
        while not done.wait(PROGRESS_SECONDS):
            progress = progress_line(_run_log(project, protocol)) or "starting"
            logger.info("%s: %s, %s", label, duration(time.monotonic() - started), progress)

    # A thread that only reads the log file: the project's database stays with the caller's thread.
    reporter = threading.Thread(target=report, name=f"progress of {label}", daemon=True)
    reporter.start()
    try:
        yield
    finally:
        done.set()
        reporter.join()


def launch(project: Project, protocol_class, label: str, **params):
    """Create, run and return a protocol, logging its start, progress and end.

    Raises RuntimeError with the tail of its log if it does not finish.
    """
    protocol = project.newProtocol(protocol_class, objLabel=label, **params)
    logger.info("%s: started (%s)", label, protocol_class.__name__)
    started = time.monotonic()
    with _progress_reports(project, protocol, label, started):
        project.launchProtocol(protocol, wait=True)
    elapsed = duration(time.monotonic() - started)
    if not protocol.isFinished():
        tail = "\n".join(protocol.getLogsLastLines(40, logFile=1))
        raise RuntimeError(f"Protocol '{label}' ended {protocol.getStatus()} after {elapsed}:\n{tail}")
    logger.info("%s: finished in %s", label, elapsed)
    return protocol


def import_tomograms(project: Project, dataset: SimulatedDataset, pattern: str, label: str):
    """Import the dataset's tomograms whose file names match a glob ``pattern``."""
    return launch(
        project,
        ProtImportTomograms,
        label,
        filesPath=dataset.getPath(),
        filesPattern=pattern,
        samplingRate=dataset.voxel_size(),
    )


def import_class_coordinates(project: Project, dataset: SimulatedDataset, tomograms, label: str):
    """One coordinate set per class with tomo's importer (positions only), for the given tomograms."""
    sets = []
    for cls in dataset.classes():
        protocol = launch(
            project,
            ProtImportCoordinates3D,
            f"{label} {cls['name']}",
            filesPath=f"{dataset.getPath()}/class{cls['id']}",
            filesPattern="*.txt",
            importTomograms=tomograms,
            boxSize=box_size(cls),
        )
        sets.append(protocol.outputCoordinates)
    return sets


def sphere_targets(project: Project, dataset: SimulatedDataset, pattern: str) -> tuple:
    """Import the tomograms matching a glob ``pattern`` and their particles (one coordinate set
    per class), and paint each particle as a sphere of its class's radius.

    Returns
    -------
    tuple
        The tomograms (SetOfTomograms), the coordinate sets (one per class) and the targets run.
    """
    tomograms = import_tomograms(project, dataset, pattern, "tomograms").Tomograms
    coordinates = import_class_coordinates(project, dataset, tomograms, "particles")
    targets = launch(
        project,
        DeepFinderProtGenerateTargets,
        "targets",
        inputTomograms=tomograms,
        inputCoordinates=coordinates,
        radii=", ".join(f"{c['radius_voxels']:g}" for c in dataset.classes()),
        radiusInPixels=True,
    )
    return tomograms, coordinates, targets


def box_size(cls: dict) -> int:
    return int(round(default_of(ClusterSettings, "box_scale") * cls["radius_voxels"]))


def radii_A(dataset: SimulatedDataset) -> str:
    """The classes' radii in Angstrom, in class order: the cluster protocol's "radii" field."""
    return ", ".join(f"{cls['radius_voxels'] * dataset.voxel_size():g}" for cls in dataset.classes())


def import_masks(project: Project, dataset: SimulatedDataset, tomograms, label: str):
    """The regions of interest ``<tsId>_mask.mrc`` of the given tomograms, as a SetOfTomoMasks."""
    return launch(
        project,
        ProtImportTomomasks,
        label,
        filesPath=dataset.getPath(),
        filesPattern="{TS}_mask.mrc",
        inputTomos=tomograms,
    ).tomomasks


def import_particles(project: Project, dataset: SimulatedDataset, tomograms, label: str):
    """All classes (groupId) with orientations, from the simulator's particle tables."""
    return launch(
        project,
        DeepFinderProtImportParticles,
        label,
        filesPath=f"{dataset.getPath()}/tomo_*_particles.csv",
        inputTomograms=tomograms,
        boxSize=max(box_size(cls) for cls in dataset.classes()),
    ).coordinates


def import_shapes(project: Project, dataset: SimulatedDataset) -> list:
    """Each class's shape mask as a Volume, in class order."""
    return [
        launch(
            project,
            ProtImportVolumes,
            f"shape {cls['name']}",
            filesPath=f"{dataset.getPath()}/{cls['mask']}",
            samplingRate=dataset.voxel_size(),
        ).outputVolume
        for cls in dataset.classes()
    ]


def segment(project: Project, tomograms, model, label: str, masks=None):
    """Segment tomograms (averaged over 4 rotations), within their regions of interest if given."""
    region = {"inputMasks": masks} if masks is not None else {}
    return launch(
        project,
        DeepFinderProtSegment,
        label,
        inputTomograms=tomograms,
        inputModel=model,
        averageRotations=True,
        **region,
    )


def run_pipeline(
    project: Project,
    dataset: SimulatedDataset,
    train_pattern: str,
    test_pattern: str,
    training: TrainFormValues | None = None,
) -> dict:
    """Run the chain, training on the tomograms matching ``train_pattern`` (a glob) and
    picking in those matching ``test_pattern``; return its protocols by step name.

    Targets are the particles' shapes, rotated by their orientations (the
    simulator's tables keep them); evaluation is against the true particles.
    """
    training = training or TrainFormValues()
    classes = dataset.classes()
    names = ", ".join(cls["name"] for cls in classes)
    run = {}
    run["train tomograms"] = import_tomograms(project, dataset, train_pattern, "training tomograms")
    run["test tomograms"] = import_tomograms(project, dataset, test_pattern, "test tomograms")
    training_tomograms = run["train tomograms"].Tomograms
    test_tomograms = run["test tomograms"].Tomograms
    particles = import_particles(project, dataset, training_tomograms, "particles")
    reference = import_particles(project, dataset, test_tomograms, "reference")
    by_group = {"classesFrom": CLASSES_FROM_GROUP_ID, "classNames": names}
    run["targets"] = launch(
        project,
        DeepFinderProtGenerateTargets,
        "targets",
        inputTomograms=training_tomograms,
        inputCoordinates=[particles],
        strategy=SHAPES,
        shapeVolumes=import_shapes(project, dataset),
        **by_group,
    )
    run["train"] = launch(
        project,
        DeepFinderProtTrain,
        "train",
        inputLabelMaps=run["targets"].labelMaps,
        inputCoordinates=[particles],
        patchSize=training.patchSize,
        batchSize=training.batchSize,
        epochs=training.epochs,
        stepsPerEpoch=training.stepsPerEpoch,
        validationSteps=training.validationSteps,
        learningRate=training.learningRate,
        shiftVoxels=training.shiftVoxels,
        **by_group,
        **training.extra,
    )
    run["segment"] = segment(project, test_tomograms, run["train"].model, "segment")
    run["cluster"] = launch(
        project,
        DeepFinderProtCluster,
        "cluster",
        inputTomograms=test_tomograms,
        inputLabelMaps=run["segment"].labelMaps,
        radii=radii_A(dataset),
    )
    run["evaluate"] = launch(
        project,
        DeepFinderProtEvaluate,
        "evaluate",
        pickedCoordinates=[run["cluster"].coordinates],
        inputCoordinates=[reference],
        toleranceA=TOLERANCE_VOXELS * dataset.voxel_size(),
        **by_group,
    )
    return run


def cluster_four_ways(
    project: Project, tomograms, label_maps, masks, radii: str, plain=None
) -> dict[str, object]:
    """Cluster label maps in each of the :data:`CLUSTER_WAYS`; return the cluster runs by way.

    Parameters
    ----------
    tomograms, label_maps, masks
        A SetOfTomograms, their label maps and their regions of interest (SetOfTomoMasks), by tsId.
    radii : str
        The cluster protocol's radii field (Angstrom per class, see :func:`radii_A`).
    plain : protocol, optional
        A finished cluster run of these label maps without threshold nor mask: the first way, not run again.
    """
    runs = {}
    for way, (automatic, masked) in CLUSTER_WAYS.items():
        if plain is not None and not (automatic or masked):
            runs[way] = plain
            continue
        region = {"inputMasks": masks} if masked else {}
        runs[way] = launch(
            project,
            DeepFinderProtCluster,
            f"cluster ({way})",
            inputTomograms=tomograms,
            inputLabelMaps=label_maps,
            radii=radii,
            scoreThreshold=THRESHOLD_AUTOMATIC if automatic else THRESHOLD_NONE,
            **region,
        )
    return runs


def four_ways_report(
    project: Project, dataset: SimulatedDataset, tomograms, label_maps, plain=None, model=None
) -> str:
    """Import the regions of interest of ``tomograms``, cluster their label maps in the four
    :data:`CLUSTER_WAYS` and return :func:`picking_report` against the dataset's true particles.

    ``plain``: a finished cluster run of these label maps without threshold nor mask (reused).
    ``model``: the model that segmented them; the tomograms are then segmented again within the
    mask and clustered with it, a fifth way (:data:`MASKED_SEGMENTATION`).
    """
    masks = import_masks(project, dataset, tomograms, "slab masks")
    runs = cluster_four_ways(project, tomograms, label_maps, masks, radii_A(dataset), plain)
    if model is not None:
        runs[MASKED_SEGMENTATION] = launch(
            project,
            DeepFinderProtCluster,
            f"cluster ({MASKED_SEGMENTATION})",
            inputTomograms=tomograms,
            inputLabelMaps=segment(project, tomograms, model, "segment (mask)", masks).labelMaps,
            inputMasks=masks,
            radii=radii_A(dataset),
        )
    reference = ParticleTable.concat(
        [
            particle_csv.read(Path(dataset.getPath(), f"{t.getTsId()}_particles.csv")).particles
            for t in tomograms
        ]
    )
    names = {cls["id"]: cls["name"] for cls in dataset.classes()}
    return picking_report(
        {way: picks_of(run) for way, run in runs.items()}, reference, slabs_of(masks), names
    )


def picks_of(cluster_run) -> ParticleTable:
    """The picks of a cluster run (all classes), in voxels of its tomograms."""
    sampling = cluster_run.inputTomograms.get().getSamplingRate()
    return coordinates_to_table(cluster_run.coordinates, sampling)


def slabs_of(masks) -> dict[str, np.ndarray]:
    """The regions of interest of a SetOfTomoMasks as boolean (z, y, x) arrays, by tsId."""
    return {mask.getTsId(): np.asarray(read_volume(mask.getFileName())) > 0 for mask in masks}


def picks_outside(picks: ParticleTable, slabs: dict[str, np.ndarray]) -> np.ndarray:
    """Whether each pick lies outside the region of interest of its tomogram."""
    outside = np.zeros(len(picks), dtype=bool)
    for tomo, slab in slabs.items():
        of_tomo = picks.tomo == tomo
        outside[of_tomo] = ~positions_inside(slab, picks.xyz[of_tomo])
    return outside


def picking_report(
    picks_by_way: dict[str, ParticleTable],
    reference: ParticleTable,
    slabs: dict[str, np.ndarray],
    class_names: dict[int, str],
    tolerance_voxels: float = TOLERANCE_VOXELS,
) -> str:
    """Per way of picking: the per-class precision/recall/F1 table and the picks outside the
    regions of interest; then one line per way with each class's F1.

    Parameters
    ----------
    picks_by_way : dict
        The picks of each way (e.g. :data:`CLUSTER_WAYS`), in voxels.
    reference : ParticleTable
        The true particles of the same tomograms.
    slabs : dict
        Each tomogram's region of interest, boolean (z, y, x), by tomogram id.
    class_names : dict
        Class id -> name (background excluded).
    """
    sections, scores = [], {}
    for way, picks in picks_by_way.items():
        rows = precision_recall_f1(match_by_distance(picks, reference, tolerance_voxels), class_names)
        outside = picks_outside(picks, slabs)
        per_class = ", ".join(
            f"{name} {int((outside & (picks.class_id == k)).sum())}" for k, name in class_names.items()
        )
        sections.append(
            f"{way}:\n{format_table(rows)}\npicks outside the slab: {int(outside.sum())} ({per_class})"
        )
        scores[way] = (rows, int(outside.sum()))
    return "\n\n".join(sections) + "\n\n" + _f1_summary(scores, class_names)


def _f1_summary(scores: dict[str, tuple[list[ClassScores], int]], class_names: dict[int, str]) -> str:
    """One line per way: F1 of each class and of all, and the picks outside the slab."""
    columns = [*class_names.values(), "all"]
    width = max(len(way) for way in scores)
    lines = [f"{'F1':<{width}}  " + " ".join(f"{name:>9}" for name in columns) + "  outside"]
    for way, (rows, outside) in scores.items():
        f1 = {row.name: row.f1 for row in rows}
        lines.append(
            f"{way:<{width}}  "
            + " ".join(f"{f1[name]:>9.2f}" if name in f1 else f"{'-':>9}" for name in columns)
            + f"  {outside:>7}"
        )
    return "\n".join(lines)
