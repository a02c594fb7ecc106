"""Viewers of the DeepFinder plugin; Scipion finds the Viewer classes imported here."""

from .viewers import (
    DeepFinderEvaluationViewer,
    DeepFinderLabelMapViewer,
    DeepFinderPicksViewer,
    DeepFinderTrainingViewer,
)

__all__ = [
    "DeepFinderEvaluationViewer",
    "DeepFinderLabelMapViewer",
    "DeepFinderPicksViewer",
    "DeepFinderTrainingViewer",
]
