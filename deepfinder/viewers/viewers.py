"""Scipion viewers of DeepFinder runs and outputs (Tk windows of matplotlib pictures).

Scipion offers them for the objects in ``_targets`` (a protocol: "Analyze
results"; an output: its context menu), through ``Domain.findViewers``.
"""

from __future__ import annotations

import os

from pyworkflow.viewer import DESKTOP_TKINTER, View, Viewer
from tomo.objects import SetOfTomoMasks

from ..convert import get_class_names, tomograms_by_tsid
from ..core.tables import csv as particle_csv
from ..figures.pictures import Draw, clusters_page, evaluation_page, slices_page, training_page
from ..figures.score_fits import threshold_page
from ..objects import DeepFinderModel
from ..protocols import (
    DeepFinderProtCluster,
    DeepFinderProtEvaluate,
    DeepFinderProtGenerateTargets,
    DeepFinderProtSegment,
    DeepFinderProtTrain,
)
from ..protocols.protocol_targets import SPHERES

#: How often a window of a running training re-reads its history.
TRAINING_REFRESH_SECONDS = 20.0
HISTOGRAMS_PAGE = "cluster size and score histograms"


class PlotView(View):
    """A window of matplotlib pictures (:class:`~deepfinder.viewers.plot_window.PlotWindow`)."""

    def __init__(self, title: str, pages: dict[str, Draw], refresh_seconds: float = 0.0, parent=None):
        self.title, self.pages = title, pages
        self.refresh_seconds, self.parent = refresh_seconds, parent

    def show(self):
        from .plot_window import open_plot_window  # Tk only when a window is opened

        open_plot_window(self.title, self.pages, self.refresh_seconds, self.parent)


class DeepFinderViewer(Viewer):
    """Common part: a window of the pages (name: draw) that a subclass's ``_pages(obj)`` gives."""

    _environments = [DESKTOP_TKINTER]

    def _visualize(self, obj, **kwargs):
        pages = self._pages(obj)
        if not pages:
            return [self.infoMessage("Nothing to show yet: run the protocol first.", title=self.getName())]
        refresh = TRAINING_REFRESH_SECONDS if self._isRunning(obj) else 0.0
        return [PlotView(f"DeepFinder: {self._title(obj)}", pages, refresh, self.getTkRoot())]

    def _isRunning(self, obj) -> bool:
        return False

    @staticmethod
    def _title(obj) -> str:
        return obj.getRunName() if hasattr(obj, "getRunName") else obj.getObjLabel() or str(obj)


class DeepFinderTrainingViewer(DeepFinderViewer):
    """Loss and per-class validation F1 per epoch; follows a training still running."""

    _name = "DeepFinder learning curves"
    _targets = [DeepFinderProtTrain, DeepFinderModel]

    def _pages(self, obj):
        if isinstance(obj, DeepFinderModel):
            history, names = obj.getHistoryFile(), obj.getClassNames()
            if not history:
                return {}
        else:
            history, names = obj._historyFile(), obj._allClassNames()
        return {"learning curves": training_page(history, names)}

    def _isRunning(self, obj):
        return isinstance(obj, DeepFinderProtTrain) and obj.isActive()


class DeepFinderLabelMapViewer(DeepFinderViewer):
    """Orthoslices of each tomogram with its label map (and, for targets, the particles)."""

    _name = "DeepFinder label maps over tomograms"
    _targets = [DeepFinderProtGenerateTargets, DeepFinderProtSegment, SetOfTomoMasks]

    @classmethod
    def can_handle_this_instance(cls, instance):
        # Other plugins' masks have no class names; the tomo plugin's viewers show them.
        return not isinstance(instance, SetOfTomoMasks) or get_class_names(instance) is not None

    def _pages(self, obj):
        label_maps = obj if isinstance(obj, SetOfTomoMasks) else getattr(obj, "labelMaps", None)
        if label_maps is None:
            return {}
        names = get_class_names(label_maps) or []
        particles, radii = None, None
        if isinstance(obj, DeepFinderProtGenerateTargets):
            tomograms = obj.inputTomograms.get()
            particles = obj._particleTable(tomograms.getSamplingRate())
            radii = obj._radiiVoxels() if obj.strategy.get() == SPHERES else None
        return {
            tsId: slices_page(
                mask.getVolName(),
                names,
                mask.getFileName(),
                particles.of_tomogram(tsId) if particles is not None else None,
                radii,
                title=tsId,
            )
            for tsId, mask in tomograms_by_tsid(label_maps).items()
        }


class DeepFinderPicksViewer(DeepFinderViewer):
    """Histograms of cluster size and score per class; the score threshold of each tomogram (with
    its fit when automatic); picks over orthoslices of each tomogram."""

    _name = "DeepFinder picked particles"
    _targets = [DeepFinderProtCluster]

    def _pages(self, obj):
        label_maps = tomograms_by_tsid(obj.inputLabelMaps.get())
        done = {
            tsId: obj._particlesFile(tsId) for tsId in label_maps if os.path.exists(obj._particlesFile(tsId))
        }
        if not done:
            return {}
        names = obj._classNames()
        pages = {HISTOGRAMS_PAGE: clusters_page(list(done.values()), names, obj._hasScoreMaps())}
        for tsId in done:
            if os.path.exists(obj._thresholdReport(tsId)):
                pages[f"score threshold {tsId}"] = threshold_page(obj._thresholdReport(tsId), names)
        radii = obj._radiiVoxels()
        tomograms = tomograms_by_tsid(obj.inputTomograms.get())
        for tsId, path in done.items():
            pages[tsId] = slices_page(
                tomograms[tsId].getFileName(),
                names,
                label_maps[tsId].getFileName(),
                particle_csv.read(path).particles,
                radii,
                title=tsId,
            )
        return pages


class DeepFinderEvaluationViewer(DeepFinderViewer):
    """Per-class precision, recall, F1 table and their curves against the score threshold."""

    _name = "DeepFinder evaluation"
    _targets = [DeepFinderProtEvaluate]

    def _pages(self, obj):
        scores = obj._getExtraPath("evaluation.csv")
        if not os.path.exists(scores):
            return {}
        return {"evaluation": evaluation_page(scores, obj._getExtraPath("threshold_sweep.csv"))}
