"""The whole DeepFinder chain in a Scipion project, on a generated dataset.

Used by the README's main job (scripts/demo.py) and by the protocol tests, so
both run exactly the same chain: import tomograms -> import particles (with
orientations) and class shapes -> generate targets -> train -> segment ->
cluster -> evaluate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pwem.protocols import ProtImportVolumes
from pyworkflow.project import Project
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms

from ..protocols import (
    DeepFinderProtCluster,
    DeepFinderProtEvaluate,
    DeepFinderProtGenerateTargets,
    DeepFinderProtImportParticles,
    DeepFinderProtSegment,
    DeepFinderProtTrain,
)
from ..protocols.protocol_base import CLASSES_FROM_GROUP_ID
from ..protocols.protocol_targets import SHAPES
from . import GeneratedDataSet


@dataclass
class TrainingSettings:
    """Settings that learn the generated presets in minutes on 2 CPU cores (see RESULTS.md)."""

    patchSize: int = 32
    batchSize: int = 4
    epochs: int = 20
    stepsPerEpoch: int = 16
    validationSteps: int = 2
    learningRate: float = 1e-3
    shiftVoxels: int = 6
    extra: dict = field(default_factory=dict)


def launch(project: Project, protocol_class, label: str, **params):
    """Create, run and return a protocol; raise with its log tail if it fails."""
    protocol = project.newProtocol(protocol_class, objLabel=label, **params)
    project.launchProtocol(protocol, wait=True)
    if not protocol.isFinished():
        tail = "\n".join(protocol.getLogsLastLines(40, logFile=1))
        raise RuntimeError(f"Protocol '{label}' ended {protocol.getStatus()}:\n{tail}")
    return protocol


def import_tomograms(project: Project, dataset: GeneratedDataSet, pattern: str, label: str):
    """Import the dataset's tomograms whose file names match a glob ``pattern``."""
    return launch(
        project,
        ProtImportTomograms,
        label,
        filesPath=dataset.getPath(),
        filesPattern=pattern,
        samplingRate=dataset.voxel_size(),
    )


def import_class_coordinates(project: Project, dataset: GeneratedDataSet, tomograms, label: str):
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


def box_size(cls: dict) -> int:
    return int(round(2.5 * cls["radius_voxels"]))


def import_particles(project: Project, dataset: GeneratedDataSet, tomograms, label: str):
    """All classes (groupId) with orientations, from the simulator's particle tables."""
    return launch(
        project,
        DeepFinderProtImportParticles,
        label,
        filesPath=f"{dataset.getPath()}/tomo_*_particles.csv",
        inputTomograms=tomograms,
        boxSize=max(box_size(cls) for cls in dataset.classes()),
    ).coordinates


def import_shapes(project: Project, dataset: GeneratedDataSet) -> list:
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


def run_pipeline(
    project: Project,
    dataset: GeneratedDataSet,
    train_pattern: str,
    test_pattern: str,
    training: TrainingSettings | None = None,
) -> dict:
    """Run the chain, training on the tomograms matching ``train_pattern`` (a glob) and
    picking in those matching ``test_pattern``; return its protocols by step name.

    Targets are the particles' shapes, rotated by their orientations (the
    simulator's tables keep them); evaluation is against the true particles.
    """
    training = training or TrainingSettings()
    classes = dataset.classes()
    names = ", ".join(cls["name"] for cls in classes)
    radii_A = ", ".join(f"{cls['radius_voxels'] * dataset.voxel_size():g}" for cls in classes)
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
    run["segment"] = launch(
        project,
        DeepFinderProtSegment,
        "segment",
        inputTomograms=test_tomograms,
        inputModel=run["train"].model,
        averageRotations=True,
    )
    run["cluster"] = launch(
        project,
        DeepFinderProtCluster,
        "cluster",
        inputTomograms=test_tomograms,
        inputLabelMaps=run["segment"].labelMaps,
        radii=radii_A,
    )
    run["evaluate"] = launch(
        project,
        DeepFinderProtEvaluate,
        "evaluate",
        pickedCoordinates=[run["cluster"].coordinates],
        inputCoordinates=[reference],
        toleranceA=6 * dataset.voxel_size(),
        **by_group,
    )
    return run
