"""Scipion protocols of the DeepFinder plugin."""

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
