"""The cluster protocol's score threshold: given, automatic, from an evaluation; its form checks.

One tomogram whose label map holds 12 whole balls and 8 balls cut in half by the tomogram's
top face: without score maps a pick's score is its cluster size, so the half balls are the
low-scoring picks every kind of threshold should drop, and the evaluation's reference is
the 12 whole ones.
"""

import os

import mrcfile
import numpy as np
import pytest
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms

from deepfinder.convert import coordinates_to_table, tomogram_geometries, tomograms_by_tsid
from deepfinder.core import tables
from deepfinder.core.model import build_unet, save_model
from deepfinder.protocols import (
    DeepFinderProtCluster,
    DeepFinderProtEvaluate,
    DeepFinderProtGenerateTargets,
    DeepFinderProtImportModel,
    DeepFinderProtSegment,
)
from deepfinder.protocols.protocol_base import CLASSES_PER_SET
from deepfinder.protocols.protocol_cluster import (
    THRESHOLD_AUTOMATIC,
    THRESHOLD_EVALUATION,
    THRESHOLD_GIVEN,
    THRESHOLD_NONE,
)
from deepfinder.viewers.viewers import DeepFinderPicksViewer

pytestmark = pytest.mark.slow  # a dozen protocol runs

# 35 picks: enough for the automatic threshold to fit (core.threshold.MIN_SCORES_TO_FIT).
COLUMNS = range(10, 90, 12)
WHOLE = [[x, y, 12] for x in COLUMNS for y in (10, 22, 34)]
HALVES = [[x, y, 0] for x in COLUMNS for y in (48, 58)]
# Between a half ball (about 130 voxels) and a whole one (257) of radius 4 voxels.
SIZE_THRESHOLD = "220"


def _errors(protocol) -> str:
    return "\n".join(protocol.validate())


class TestClusterThreshold(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        with mrcfile.new(cls.getOutputPath("tc.mrc")) as mrc:
            mrc.set_data(np.random.default_rng(5).normal(size=(24, 64, 96)).astype(np.float32))
            mrc.voxel_size = 10.0
        np.savetxt(cls.getOutputPath("tc.txt"), WHOLE + HALVES)
        os.makedirs(cls.getOutputPath("whole"))
        np.savetxt(cls.getOutputPath("whole/tc.txt"), WHOLE)
        cls.tomograms = cls.launchProtocol(
            cls.newProtocol(
                ProtImportTomograms, filesPath=cls.getOutputPath(), filesPattern="tc.mrc", samplingRate=10.0
            )
        ).Tomograms
        cls.all_picks = cls._coordinates(cls.getOutputPath())
        cls.whole = cls._coordinates(cls.getOutputPath("whole"))
        cls.label_maps = cls.launchProtocol(
            cls.newProtocol(
                DeepFinderProtGenerateTargets,
                inputTomograms=cls.tomograms,
                inputCoordinates=[cls.all_picks],
                radii="40",
                classNames="ball",
            )
        ).labelMaps
        cls.tsId = next(iter(cls.tomograms.iterItems())).getTsId()

    @classmethod
    def _coordinates(cls, folder):
        return cls.launchProtocol(
            cls.newProtocol(
                ProtImportCoordinates3D,
                filesPath=folder,
                filesPattern="tc.txt",
                importTomograms=cls.tomograms,
                boxSize=10,
            )
        ).outputCoordinates

    def _cluster(self, launch=True, **threshold):
        protocol = self.newProtocol(
            DeepFinderProtCluster,
            inputTomograms=self.tomograms,
            inputLabelMaps=self.label_maps,
            radii="40",
            **threshold,
        )
        return self.launchProtocol(protocol) if launch else protocol

    def _evaluate(self, picked, reference, **options):
        return self.launchProtocol(
            self.newProtocol(
                DeepFinderProtEvaluate, pickedCoordinates=picked, inputCoordinates=reference, **options
            )
        )

    def test_a_given_threshold_drops_the_half_balls_and_the_summary_counts_them(self):
        cluster = self._cluster(scoreThreshold=THRESHOLD_GIVEN, thresholds=SIZE_THRESHOLD)
        self.assertEqual(cluster.coordinates.getSize(), len(WHOLE))
        self.assertIn(
            f"ball: {len(WHOLE)} particles, {len(HALVES)} dropped below the score threshold",
            cluster.summary(),
        )
        self.assertGreater(os.path.getsize(cluster._getExtraPath(f"{self.tsId}_scores.png")), 10_000)
        self.assertTrue(all(c.getScore() > int(SIZE_THRESHOLD) for c in cluster.coordinates))
        # The same picks for RELION 5 (centred on the tomogram, in Angstrom) and Dynamo.
        sampling = self.tomograms.getSamplingRate()
        picks = coordinates_to_table(cluster.coordinates, sampling)
        for name in ("particles.star", "particles.tbl"):
            written = tables.read_table(
                cluster._getExtraPath(name),
                tomograms=tomogram_geometries(tomograms_by_tsid(self.tomograms)),
                voxel_size=sampling,
            ).particles
            self.assertEqual(set(written.tomo), {self.tsId}, name)
            np.testing.assert_allclose(
                written.xyz[np.lexsort(written.xyz.T)], picks.xyz[np.lexsort(picks.xyz.T)], atol=0.01
            )
        views = DeepFinderPicksViewer(project=self.proj, protocol=cluster)._visualize(cluster)
        self.assertIn(f"score threshold {self.tsId}", views[0].pages)

    def test_the_automatic_threshold_splits_whole_from_half_balls(self):
        cluster = self._cluster(scoreThreshold=THRESHOLD_AUTOMATIC)
        self.assertEqual(cluster.coordinates.getSize(), len(WHOLE))
        self.assertIn(f"{len(HALVES)} dropped below the score threshold", "\n".join(cluster.summary()))
        self.assertIn("Picks scoring below a threshold per class and tomogram", "\n".join(cluster.methods()))

    def test_the_best_thresholds_of_an_evaluation_are_applied(self):
        uncut = self._cluster(scoreThreshold=THRESHOLD_NONE)
        self.assertEqual(uncut.coordinates.getSize(), len(WHOLE) + len(HALVES))
        self.assertNotIn("dropped", "\n".join(uncut.summary()))
        evaluation = self._evaluate([uncut.coordinates], [self.whole])
        cluster = self._cluster(scoreThreshold=THRESHOLD_EVALUATION, thresholdEvaluation=evaluation)
        self.assertEqual(cluster.coordinates.getSize(), len(WHOLE))

    def test_form_refuses_missing_or_unreadable_thresholds(self):
        for text in ("", "big", "1:x"):
            protocol = self._cluster(False, scoreThreshold=THRESHOLD_GIVEN, thresholds=text)
            self.assertIn("Give one score threshold, or one per class (1)", _errors(protocol), text)
        good = self._cluster(False, scoreThreshold=THRESHOLD_GIVEN, thresholds=SIZE_THRESHOLD)
        self.assertEqual(_errors(good), "")

    def test_form_refuses_an_evaluation_missing_not_run_or_of_other_classes(self):
        protocol = self._cluster(False, scoreThreshold=THRESHOLD_EVALUATION)
        self.assertIn("Choose the evaluation", _errors(protocol))
        not_run = self.newProtocol(
            DeepFinderProtEvaluate, pickedCoordinates=[self.whole], inputCoordinates=[self.whole]
        )
        self.proj.saveProtocol(not_run)
        protocol = self._cluster(False, scoreThreshold=THRESHOLD_EVALUATION, thresholdEvaluation=not_run)
        self.assertIn("has no best thresholds: run it first", _errors(protocol))
        # Two classes evaluated, one in the label maps.
        two_classes = self._evaluate(
            [self.all_picks, self.all_picks], [self.whole, self.whole], pickedClassesFrom=CLASSES_PER_SET
        )
        protocol = self._cluster(False, scoreThreshold=THRESHOLD_EVALUATION, thresholdEvaluation=two_classes)
        self.assertIn("has thresholds for class(es) [2] that the label maps lack", _errors(protocol))

    def test_form_refuses_probability_thresholds_above_1_with_score_maps(self):
        weights = save_model(
            build_unet(2),
            self.getOutputPath("m.weights.h5"),
            {"class_names": ["background", "ball"], "voxel_size": 10.0},
        )
        model = self.launchProtocol(
            self.newProtocol(DeepFinderProtImportModel, weightsFile=str(weights))
        ).model
        segmented = self.launchProtocol(
            self.newProtocol(DeepFinderProtSegment, inputTomograms=self.tomograms, inputModel=model)
        )
        protocol = self.newProtocol(
            DeepFinderProtCluster,
            inputTomograms=self.tomograms,
            inputLabelMaps=segmented.labelMaps,
            radii="40",
            scoreThreshold=THRESHOLD_GIVEN,
            thresholds=SIZE_THRESHOLD,
        )
        self.assertIn("give thresholds between 0 and 1, got '220'", _errors(protocol))
        protocol.thresholds.set("0.6")
        self.assertEqual(_errors(protocol), "")
