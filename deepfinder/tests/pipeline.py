"""The whole DeepFinder chain in a Scipion project, on a generated dataset.

Used by the README's main job (scripts/demo.py) and by the protocol tests, so
both run exactly the same chain: import tomograms -> import coordinates (one set
per class) -> generate targets -> train -> segment -> cluster -> evaluate.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from pyworkflow.project import Project
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms

from ..protocols import (DeepFinderProtCluster, DeepFinderProtEvaluate,
                         DeepFinderProtGenerateTargets, DeepFinderProtSegment, DeepFinderProtTrain)
from . import GeneratedDataSet


@dataclass
class TrainingSettings:
    patchSize: int = 32
    batchSize: int = 4
    epochs: int = 10
    stepsPerEpoch: int = 20
    validationSteps: int = 4
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
    return launch(project, ProtImportTomograms, label, filesPath=dataset.getPath(),
                  filesPattern=pattern, samplingRate=dataset.voxel_size())


def import_class_coordinates(project: Project, dataset: GeneratedDataSet, tomograms, label: str):
    """One coordinate set per class, for the given tomograms."""
    sets = []
    for cls in dataset.classes():
        protocol = launch(project, ProtImportCoordinates3D, f"{label} {cls['name']}",
                          filesPath=f"{dataset.getPath()}/class{cls['id']}", filesPattern="*.txt",
                          importTomograms=tomograms, boxSize=int(round(2.5 * cls["radius_voxels"])))
        sets.append(protocol.outputCoordinates)
    return sets


def run_pipeline(project: Project, dataset: GeneratedDataSet, train_pattern: str,
                 test_pattern: str, training: TrainingSettings = TrainingSettings()) -> dict:
    """Run the chain, training on the tomograms matching ``train_pattern`` (a glob) and
    picking in those matching ``test_pattern``; return its protocols by step name."""
    classes = dataset.classes()
    names = ", ".join(cls["name"] for cls in classes)
    radii_px = ", ".join(f"{cls['radius_voxels']:g}" for cls in classes)
    radii_A = ", ".join(f"{cls['radius_voxels'] * dataset.voxel_size():g}" for cls in classes)
    run = {}
    run["train tomograms"] = import_tomograms(project, dataset, train_pattern, "training tomograms")
    run["test tomograms"] = import_tomograms(project, dataset, test_pattern, "test tomograms")
    training_tomograms = run["train tomograms"].Tomograms
    test_tomograms = run["test tomograms"].Tomograms
    train_coords = import_class_coordinates(project, dataset, training_tomograms, "particles")
    reference = import_class_coordinates(project, dataset, test_tomograms, "reference")
    run["targets"] = launch(project, DeepFinderProtGenerateTargets, "targets",
                            inputTomograms=training_tomograms, inputCoordinates=train_coords,
                            classNames=names, radii=radii_px, radiusInPixels=True)
    run["train"] = launch(project, DeepFinderProtTrain, "train",
                          inputLabelMaps=run["targets"].labelMaps, inputCoordinates=train_coords,
                          patchSize=training.patchSize, batchSize=training.batchSize,
                          epochs=training.epochs, stepsPerEpoch=training.stepsPerEpoch,
                          validationSteps=training.validationSteps, **training.extra)
    run["segment"] = launch(project, DeepFinderProtSegment, "segment",
                            inputTomograms=test_tomograms, inputModel=run["train"].model)
    run["cluster"] = launch(project, DeepFinderProtCluster, "cluster",
                            inputTomograms=test_tomograms,
                            inputLabelMaps=run["segment"].labelMaps, radii=radii_A)
    run["evaluate"] = launch(project, DeepFinderProtEvaluate, "evaluate",
                             pickedCoordinates=[run["cluster"].coordinates],
                             inputCoordinates=reference, classNames=names)
    return run
