"""Scipion protocols of the DeepFinder plugin."""

from .legacy import (
    DeepFinderAnnotations,
    DeepFinderCluster,
    DeepFinderGenerateTrainingTargetsSpheres,
    DeepFinderSegment,
    DeepFinderSWA,
    DeepFinderTrain,
    ImportCoordinates3D,
    ProtDeepFinderLoadTrainingModel,
)
from .protocol_annotate import DeepFinderProtAnnotate
from .protocol_cluster import DeepFinderProtCluster
from .protocol_consensus import DeepFinderProtConsensus
from .protocol_evaluate import DeepFinderProtEvaluate
from .protocol_import_model import DeepFinderProtImportModel
from .protocol_particle_files import DeepFinderProtExportParticles, DeepFinderProtImportParticles
from .protocol_review import DeepFinderProtReview
from .protocol_segment import DeepFinderProtSegment
from .protocol_targets import DeepFinderProtGenerateTargets
from .protocol_train import DeepFinderProtTrain

PROTOCOL_CLASSES = [
    DeepFinderProtAnnotate,
    DeepFinderProtReview,
    DeepFinderProtGenerateTargets,
    DeepFinderProtTrain,
    DeepFinderProtSegment,
    DeepFinderProtCluster,
    DeepFinderProtEvaluate,
    DeepFinderProtImportModel,
    DeepFinderProtConsensus,
    DeepFinderProtImportParticles,
    DeepFinderProtExportParticles,
]

#: The DeepFinder 3.x plugin's protocols, by their names: Scipion finds 3.x runs of old projects
#: through them. They are not offered among the protocols to run (``isDisabled``).
LEGACY_PROTOCOL_CLASSES = [
    DeepFinderAnnotations,
    DeepFinderGenerateTrainingTargetsSpheres,
    DeepFinderTrain,
    DeepFinderSegment,
    DeepFinderCluster,
    ProtDeepFinderLoadTrainingModel,
    ImportCoordinates3D,
    DeepFinderSWA,
]
