"""Scipion finds our viewers for our protocols and outputs; runs leave PNGs in their extra folder."""

import json
import os
import unittest
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from matplotlib.figure import Figure
from pwem import Domain
from pyworkflow.tests import BaseTest, setupTestProject
from pyworkflow.viewer import DESKTOP_TKINTER
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms

from deepfinder.objects import DeepFinderModel
from deepfinder.protocols import (
    DeepFinderProtCluster,
    DeepFinderProtEvaluate,
    DeepFinderProtGenerateTargets,
    DeepFinderProtTrain,
)
from deepfinder.tests.virtual_display import VirtualDisplay
from deepfinder.viewers import (
    DeepFinderEvaluationViewer,
    DeepFinderLabelMapViewer,
    DeepFinderPicksViewer,
    DeepFinderTrainingViewer,
)
from deepfinder.viewers.viewers import HISTOGRAMS_PAGE, PlotView

NAMES = ["background", "ta"]


def _history(epochs: int) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "val_loss": 1.1 / e,
            "val_f1": [0.99, 0.2 * e],
            "val_mean_f1": 0.2 * e,
            "seconds": 1.0,
        }
        for e in range(1, epochs + 1)
    ]


class TestViewers(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        rng = np.random.default_rng(4)
        with mrcfile.new(cls.getOutputPath("ta.mrc")) as mrc:
            mrc.set_data(rng.normal(size=(16, 32, 32)).astype(np.float32))
            mrc.voxel_size = 10.0
        np.savetxt(cls.getOutputPath("ta.txt"), [[8, 8, 6], [22, 20, 9]])
        cls.tomograms = cls.launchProtocol(
            cls.newProtocol(
                ProtImportTomograms, filesPath=cls.getOutputPath(), filesPattern="ta.mrc", samplingRate=10.0
            )
        ).Tomograms
        cls.coords = cls.launchProtocol(
            cls.newProtocol(
                ProtImportCoordinates3D,
                filesPath=cls.getOutputPath(),
                filesPattern="ta.txt",
                importTomograms=cls.tomograms,
                boxSize=8,
            )
        ).outputCoordinates
        cls.targets = cls.launchProtocol(
            cls.newProtocol(
                DeepFinderProtGenerateTargets,
                inputTomograms=cls.tomograms,
                inputCoordinates=[cls.coords],
                radii="40",
                classNames="ta",
            )
        )
        cls.cluster = cls.launchProtocol(
            cls.newProtocol(
                DeepFinderProtCluster,
                inputTomograms=cls.tomograms,
                inputLabelMaps=cls.targets.labelMaps,
                radii="40",
            )
        )
        cls.evaluate = cls.launchProtocol(
            cls.newProtocol(
                DeepFinderProtEvaluate,
                pickedCoordinates=[cls.cluster.coordinates],
                inputCoordinates=[cls.coords],
            )
        )
        cls.tsId = next(iter(cls.tomograms.iterItems())).getTsId()

    def _pages(self, viewer_class, obj) -> dict:
        views = viewer_class(project=self.proj, protocol=obj)._visualize(obj)
        self.assertEqual(len(views), 1)
        self.assertIsInstance(views[0], PlotView)
        return views[0].pages

    def test_scipion_finds_our_viewers(self):
        expected = [
            (self.targets, DeepFinderLabelMapViewer),
            (self.targets.labelMaps, DeepFinderLabelMapViewer),
            (self.cluster, DeepFinderPicksViewer),
            (self.evaluate, DeepFinderEvaluationViewer),
            (self.newProtocol(DeepFinderProtTrain), DeepFinderTrainingViewer),
            (DeepFinderModel(classNames=NAMES), DeepFinderTrainingViewer),
        ]
        for obj, viewer in expected:
            self.assertIn(viewer, Domain.findViewers(obj, DESKTOP_TKINTER), type(obj).__name__)
        # Masks of other plugins (no class names) are left to the tomo plugin's viewers.
        self.assertNotIn(
            DeepFinderLabelMapViewer, Domain.findViewers(self.coords.__class__(), DESKTOP_TKINTER)
        )

    def test_runs_leave_pngs_in_their_extra_folder(self):
        for protocol, names in (
            (self.targets, [f"{self.tsId}_labels.png"]),
            (self.cluster, [f"{self.tsId}_picks.png", "cluster_histograms.png"]),
            (self.evaluate, ["evaluation.png"]),
        ):
            pictures = sorted(p.name for p in Path(protocol._getExtraPath()).glob("*.png"))
            self.assertEqual(pictures, sorted(names))
            for name in names:
                self.assertGreater(os.path.getsize(protocol._getExtraPath(name)), 10_000)

    def test_label_map_viewer_shows_each_tomogram_with_its_particles(self):
        for obj in (self.targets, self.targets.labelMaps):
            pages = self._pages(DeepFinderLabelMapViewer, obj)
            self.assertEqual(list(pages), [self.tsId])
            figure = Figure()
            pages[self.tsId](figure)
            self.assertEqual(len(figure.axes), 4)  # three views and the legend
        # The targets run also marks its input particles: both cut the slices at their median.
        self.assertEqual(len(figure.axes[0].patches), 0)
        pages = self._pages(DeepFinderLabelMapViewer, self.targets)
        pages[self.tsId](figure)
        self.assertGreater(len(figure.axes[0].patches), 0)

    def test_picks_viewer_has_histograms_then_one_page_per_tomogram(self):
        pages = self._pages(DeepFinderPicksViewer, self.cluster)
        self.assertEqual(list(pages), [HISTOGRAMS_PAGE, self.tsId])
        figure = Figure()
        pages[HISTOGRAMS_PAGE](figure)
        # Without score maps the score is the cluster size: one histogram, of sizes.
        self.assertEqual([axes.get_title() for axes in figure.axes], ["Cluster size"])
        self.assertEqual([t.get_text() for t in figure.axes[0].get_legend().get_texts()], ["ta (2)"])

    def test_evaluation_viewer_draws_the_table_and_curves(self):
        figure = Figure()
        self._pages(DeepFinderEvaluationViewer, self.evaluate)["evaluation"](figure)
        self.assertEqual(len(figure.axes), 4)
        self.assertEqual(len(figure.axes[0].tables), 1)

    def test_training_viewer_reads_the_model_history(self):
        path = self.getOutputPath("history.json")
        Path(path).write_text(json.dumps(_history(3)))
        pages = self._pages(DeepFinderTrainingViewer, DeepFinderModel(classNames=NAMES, historyFile=path))
        figure = Figure()
        pages["learning curves"](figure)
        self.assertEqual(len(figure.axes[1].get_lines()), 3)  # class ta, mean, best epoch
        imported = DeepFinderModel(classNames=NAMES)  # an imported model has no history
        views = DeepFinderTrainingViewer(project=self.proj)._visualize(imported)
        self.assertNotIsInstance(views[0], PlotView)


@pytest.mark.slow
class TestPlotWindow(unittest.TestCase):
    """The Tk window under Xvfb: page choice, Refresh re-reading a growing history."""

    @classmethod
    def setUpClass(cls):
        cls.display = VirtualDisplay()

    @classmethod
    def tearDownClass(cls):
        cls.display.stop()

    def test_refresh_follows_the_history_and_pages_switch(self):
        import tempfile
        import tkinter as tk

        from deepfinder.figures.pictures import training_page
        from deepfinder.viewers.plot_window import PlotWindow

        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "history.json"
            path.write_text(json.dumps(_history(2)))
            root = tk.Tk()
            try:
                window = PlotWindow(
                    root,
                    "training",
                    {"curves": training_page(path, NAMES), "other": training_page(path, NAMES[:1])},
                    refresh_seconds=60,
                )
                root.update()
                self.assertEqual(len(window.figure.axes[0].get_lines()[0].get_xdata()), 2)
                path.write_text(json.dumps(_history(5)))
                window.refresh()
                root.update()
                self.assertEqual(len(window.figure.axes[0].get_lines()[0].get_xdata()), 5)
                self.assertEqual(window.status.get(), "auto-refresh every 60 s")
                window.page.set("other")
                window.refresh()
                self.assertEqual(len(window.figure.axes[1].get_lines()), 2)  # mean, best epoch
                path.write_text("{not json")
                window.refresh()
                self.assertIn("cannot draw other", window.status.get())
            finally:
                root.destroy()
