"""A project made with the DeepFinder 3.x plugin opens: its runs, parameters and outputs, usable as inputs.

The 3.x project is written with pyworkflow itself, through stand-in classes that carry the
3.x class names and attributes (the rows of the project database are then what 3.x wrote:
its class names, parameter names and its model object). It is then opened as Scipion opens
a project, with this plugin installed.
"""

from __future__ import annotations

import subprocess
import sys
import time

import numpy as np
import pwem
import pytest
import pyworkflow.object as pwobj
import pyworkflow.protocol.params as params
from pwem.objects import EMObject
from pwem.protocols import EMProtocol
from pyworkflow.project import Project
from pyworkflow.protocol import LegacyProtocol
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.objects import SetOfTomoMasks
from tomo.protocols import ProtImportTomograms

from deepfinder.convert import new_tomo_mask
from deepfinder.core import io
from deepfinder.objects import DeepFinderModel
from deepfinder.protocols import DeepFinderProtCluster, DeepFinderProtSegment, legacy
from deepfinder.tests.upstream_weights import write_upstream_weights
from deepfinder.tests.virtual_display import TIMEOUT_S, VirtualDisplay, xdotool

pytestmark = pytest.mark.slow

VOXEL_SIZE = 10.0
SHAPE_ZYX = (16, 32, 32)
CLUSTERING_SUMMARY = "Segmentation 1: a total of 1 objects has been found.\nClass 1: 1 objects"


# --- Stand-ins: what the 3.x plugin defined under these names (attributes and form parameters).
class _DeepFinderNet(EMObject):
    def __init__(self, path=None, noClasses=None, **kwargs):
        super().__init__(**kwargs)
        self._path = pwobj.String(path)
        self._nbOfClasses = pwobj.Integer(noClasses)


class _ProtDeepFinderLoadTrainingModel(EMProtocol):
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("netWeightsFile", params.FileParam)
        form.addParam("numClasses", params.IntParam)


class _DeepFinderSegment(EMProtocol):
    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputTomograms", params.PointerParam, pointerClass="SetOfTomograms")
        form.addParam("weights", params.PointerParam, pointerClass="DeepFinderNet")
        form.addParam("psize", params.IntParam, default=100)
        form.addHidden(params.GPU_LIST, params.StringParam, default="0")


class _DeepFinderCluster(EMProtocol):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.clusteringSummary = pwobj.String()

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputSegmentations", params.PointerParam, pointerClass="SetOfTomoMasks")
        form.addParam("cradius", params.IntParam, default=5)


def _named(cls, name: str):
    """``cls`` under the 3.x class name ``name`` (the name the database stores)."""
    return type(name, (cls,), {})


class TestProjectOf3x(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        labels = np.zeros(SHAPE_ZYX, np.int8)
        labels[6:11, 10:15, 10:15] = 1
        io.write_volume(
            cls.getOutputPath("ta.mrc"), np.random.default_rng(0).normal(size=SHAPE_ZYX), VOXEL_SIZE
        )
        io.write_volume(cls.getOutputPath("segmentation_ta.mrc"), labels, VOXEL_SIZE)
        cls.tomograms = cls.launchProtocol(
            cls.newProtocol(
                ProtImportTomograms,
                filesPath=cls.getOutputPath(),
                filesPattern="ta.mrc",
                samplingRate=VOXEL_SIZE,
            )
        ).Tomograms
        # Weights as the 3.x plugin's training wrote them (upstream DeepFinder, Keras 2; no JSON beside).
        cls.weights = cls.getOutputPath("net_weights_FINAL.h5")
        write_upstream_weights(cls.weights, n_classes=3)
        cls._write_3x_runs()
        # Open the project as Scipion does, with this plugin's classes.
        cls.proj = Project(pwem.Domain, cls.proj.getPath())
        cls.proj.load()
        cls.runs = {run.getClassName(): run for run in cls.proj.getRuns()}

    @classmethod
    def _write_3x_runs(cls):
        load = cls._save(
            _named(_ProtDeepFinderLoadTrainingModel, "ProtDeepFinderLoadTrainingModel"),
            "Load Training Model",
            netWeightsFile=cls.weights,
            numClasses=2,
        )
        load._defineOutputs(netWeights=_named(_DeepFinderNet, "DeepFinderNet")(path=cls.weights, noClasses=3))
        segment = cls._save(
            _named(_DeepFinderSegment, "DeepFinderSegment"),
            "segment",
            inputTomograms=cls.tomograms,
            weights=load.netWeights,
        )
        segmentations = SetOfTomoMasks.create(segment._getPath(), template="setOfTomoMasks%s.sqlite")
        segmentations.copyInfo(cls.tomograms)
        segmentations.append(
            new_tomo_mask(cls.tomograms.getFirstItem(), cls.getOutputPath("segmentation_ta.mrc"))
        )
        segment._defineOutputs(segmentations=segmentations)
        cluster = cls._save(
            _named(_DeepFinderCluster, "DeepFinderCluster"),
            "cluster",
            inputSegmentations=segmentations,
            cradius=2,
        )
        cluster.clusteringSummary.set(CLUSTERING_SUMMARY)
        cluster._store()

    @classmethod
    def _save(cls, protocol_class, label: str, **values):
        """Save a finished run of ``protocol_class``, named as the 3.x plugin's runs were by default."""
        protocol = cls.proj.newProtocol(protocol_class, **values)
        protocol.setObjLabel(f"deepfinder - {label}")
        cls.proj.saveProtocol(protocol)
        protocol.makePathsAndClean()
        protocol.setFinished()
        protocol._store()
        return protocol

    def test_3x_runs_load_as_this_plugins_classes_with_their_parameters(self):
        for name in ("ProtDeepFinderLoadTrainingModel", "DeepFinderSegment", "DeepFinderCluster"):
            run = self.runs[name]
            self.assertNotIsInstance(run, LegacyProtocol, name)
            self.assertIs(type(run), getattr(legacy, name))
            self.assertTrue(run.isFinished(), name)
        self.assertEqual(self.runs["DeepFinderSegment"].psize.get(), 100)
        self.assertEqual(self.runs["DeepFinderCluster"].cradius.get(), 2)
        self.assertEqual(self.runs["ProtDeepFinderLoadTrainingModel"].numClasses.get(), 2)
        self.assertIn(CLUSTERING_SUMMARY, self.runs["DeepFinderCluster"].summary())

    def test_the_3x_model_is_a_model_of_this_plugin(self):
        model = self.runs["ProtDeepFinderLoadTrainingModel"].netWeights
        self.assertIsInstance(model, DeepFinderModel)
        self.assertEqual(model.getWeightsFile(), self.weights)
        self.assertEqual(model.getClassNames(), ["background", "class1", "class2"])

    def test_running_a_3x_run_again_says_in_one_line_what_replaces_it(self):
        errors = self.runs["DeepFinderSegment"]._validate()
        self.assertEqual(len(errors), 1, errors)
        self.assertIn("'deepfinder - segment'", errors[0])
        self.assertIn("Tile size = 100", errors[0])
        self.assertIn("Trained model = netWeights of 'deepfinder - Load Training Model'", errors[0])
        (error,) = self.runs["DeepFinderCluster"]._validate()
        self.assertIn("'deepfinder - cluster'", error)
        self.assertIn(f"Particle radius = {2 * VOXEL_SIZE:g} Å", error)

    def test_3x_outputs_are_inputs_of_the_new_protocols(self):
        segment = self.newProtocol(
            DeepFinderProtSegment,
            inputTomograms=self.tomograms,
            inputModel=self.runs["ProtDeepFinderLoadTrainingModel"].netWeights,
            saveScores=False,
        )
        self.launchProtocol(segment)
        self.assertEqual([m.getTsId() for m in segment.labelMaps], ["ta"])
        cluster = self.newProtocol(
            DeepFinderProtCluster,
            inputTomograms=self.tomograms,
            inputLabelMaps=self.runs["DeepFinderSegment"].segmentations,
            radii=f"{2 * VOXEL_SIZE:g}",
        )
        self.launchProtocol(cluster)
        (coordinate,) = list(cluster.coordinates.iterCoordinates())
        self.assertEqual(coordinate.getTomoId(), "ta")

    def test_the_project_opens_in_the_gui_without_a_missing_class(self):
        display = VirtualDisplay(tools=("Xvfb", "xdotool", "import"))
        # -O: pyworkflow opens the window in this process (without it, it starts another one and exits).
        gui = subprocess.Popen(
            [sys.executable, "-O", "-m", "pyworkflow.apps.pw_project", self.proj.getShortName()],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            xdotool("search", "--sync", "--onlyvisible", "--name", self.proj.getShortName())
            time.sleep(3)  # the runs graph is drawn
            screen = display.screenshot("project_of_3x")
            self.assertIsNone(gui.poll(), "the project window closed")
        finally:
            gui.terminate()
            output = gui.communicate(timeout=TIMEOUT_S)[0]
            display.stop()
        self.assertGreater(screen.std(), 10)  # drawn, not blank
        self.assertNotIn("not found in mapper dict", output)
        self.assertNotIn("Traceback", output)
