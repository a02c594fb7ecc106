"""The whole chain in a real (headless) Scipion project, and its outputs used by other plugins."""

import csv
import json
import logging
import re
import time
from pathlib import Path

import pytest
from pwem.protocols import ProtSetFilter
from pyworkflow.protocol import MODE_RESUME
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.objects import Coordinate3D
from tomo.protocols import ProtMaskCoordinates

from deepfinder.protocols import DeepFinderProtTrain
from deepfinder.tests import TINY
from deepfinder.workflow import (
    PROGRESS_SECONDS,
    TrainFormValues,
    launch,
    run_pipeline,
    sphere_targets,
)

pytestmark = pytest.mark.slow

TRAIN, TEST = ["tomo_000", "tomo_001"], ["tomo_002"]
TRAIN_PATTERN, TEST_PATTERN = "tomo_00[01].mrc", "tomo_002.mrc"


class RecordedLogs(logging.Handler):
    """The INFO records of a logger, kept in a list while attached."""

    def __init__(self, name: str):
        super().__init__(logging.INFO)
        self.logger, self.records = logging.getLogger(name), []

    def emit(self, record):
        self.records.append(record)

    def __enter__(self):
        self.level = self.logger.level
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)
        return self

    def __exit__(self, *exc_info):
        self.logger.removeHandler(self)
        self.logger.setLevel(self.level)


class TestPipeline(BaseTest):
    """import -> targets -> train -> segment -> cluster -> evaluate on the tiny dataset."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        with RecordedLogs("deepfinder.workflow") as cls.reports:
            cls.steps = run_pipeline(cls.proj, TINY, TRAIN_PATTERN, TEST_PATTERN, TrainFormValues())
        cls.classes = TINY.classes()
        cls.voxel_size = TINY.voxel_size()

    def test_each_protocol_reports_its_start_progress_and_end(self):
        messages = [record.getMessage() for record in self.reports.records]
        for label in (
            "training tomograms",
            "particles",
            "targets",
            "train",
            "segment",
            "cluster",
            "evaluate",
        ):
            self.assertTrue(any(m.startswith(f"{label}: started (") for m in messages), label)
            self.assertTrue(any(re.match(rf"{label}: finished in \d+", m) for m in messages), label)
        training = [r for r in self.reports.records if r.getMessage().startswith("train: ")]
        epochs = TrainFormValues().epochs
        self.assertTrue(
            any(re.search(rf"epoch \d+/{epochs} step \d+/\d+: loss", r.getMessage()) for r in training),
            [r.getMessage() for r in training],
        )
        gaps = [later.created - earlier.created for earlier, later in zip(training, training[1:])]
        self.assertLess(max(gaps), PROGRESS_SECONDS + 5)

    def test_label_maps_match_the_training_tomograms(self):
        label_maps = self.steps["targets"].labelMaps
        self.assertEqual(label_maps.getSize(), len(TRAIN))
        self.assertEqual({m.getTsId() for m in label_maps}, set(TRAIN))
        self.assertAlmostEqual(label_maps.getSamplingRate(), self.voxel_size, places=3)
        for label_map in label_maps:
            self.assertEqual(
                label_map.getDim(), self.steps["train tomograms"].Tomograms[label_map.getObjId()].getDim()
            )

    def test_model_knows_its_classes(self):
        model = self.steps["train"].model
        self.assertEqual(model.getClassNames(), ["background"] + [c["name"] for c in self.classes])
        self.assertTrue(Path(model.getWeightsFile()).exists())
        history = json.loads(Path(model.getHistoryFile()).read_text())
        self.assertEqual(len(history), TrainFormValues().epochs)

    def test_run_logs_show_epochs_losses_and_tiles(self):
        train_log = Path(self.steps["train"].getStdoutLog()).read_text()
        self.assertIn(f"epoch 1/{TrainFormValues().epochs} step", train_log)
        self.assertIn("val loss", train_log)
        self.assertRegex(
            Path(self.steps["segment"].getStdoutLog()).read_text(), r"segment: \d+/\d+ tiles of .* done"
        )

    def test_segmentation_covers_the_test_tomogram(self):
        label_maps = self.steps["segment"].labelMaps
        self.assertEqual([m.getTsId() for m in label_maps], TEST)
        tomogram = self.steps["test tomograms"].Tomograms.getFirstItem()
        self.assertEqual(label_maps.getFirstItem().getDim(), tomogram.getDim())
        self.assertIn("rotations about Z, Y and X", self.steps["segment"].methods()[0])

    def test_one_coordinate_set_per_class_ready_for_extraction(self):
        cluster = self.steps["cluster"]
        tomograms = self.steps["test tomograms"].Tomograms
        for cls in self.classes:
            coordinates = getattr(cluster, f"coordinates_{cls['name']}")
            self.assertGreater(coordinates.getSize(), 0, cls["name"])
            self.assertAlmostEqual(coordinates.getSamplingRate(), self.voxel_size, places=3)
            self.assertEqual(coordinates.getBoxSize(), round(2.5 * cls["radius_voxels"]))
            self.assertEqual(coordinates.getPrecedents().getFirstItem().getTsId(), "tomo_002")
            self.assertEqual(set(coordinates.getUniqueValues(Coordinate3D.TOMO_ID_ATTR)), set(TEST))
            self.assertEqual(set(coordinates.getUniqueValues(Coordinate3D.GROUP_ID_ATTR)), {cls["id"]})
        self.assertEqual(
            cluster.coordinates.getSize(),
            sum(getattr(cluster, f"coordinates_{c['name']}").getSize() for c in self.classes),
        )
        self.assertEqual(tomograms.getSize(), 1)

    def test_every_class_is_found(self):
        rows = list(csv.DictReader(open(self.steps["evaluate"]._getExtraPath("evaluation.csv"))))
        f1 = {row["name"]: float(row["f1"]) for row in rows}
        for cls in self.classes:
            self.assertGreaterEqual(f1[cls["name"]], 0.9, f"F1 of {cls['name']}: {rows}")

    def test_summary_shows_which_classes_are_mixed_up(self):
        summary = self.steps["evaluate"].summary()
        start = next(i for i, line in enumerate(summary) if line.startswith("Picks by")) + 1
        columns = summary[start].split()[3:]  # after "detected \\ on"
        rows = {line.split()[0]: [int(n) for n in line.split()[1:]] for line in summary[start + 1 :]}
        for cls in self.classes:
            # Most picks of a class lie on a reference particle of that class.
            counts = rows[cls["name"]]
            self.assertGreater(counts[columns.index(cls["name"])], sum(counts) / 2, summary)

    def test_coordinates_feed_tomo_mask_coordinates(self):
        coordinates = self.steps["cluster"].coordinates
        masked = launch(
            self.proj,
            ProtMaskCoordinates,
            "mask coordinates",
            inputCoordinates=coordinates,
            inputSegmentations=self.steps["segment"].labelMaps,
        )
        output = masked.Coordinates
        # Particles whose centre is labelled stay (a ring's centre is its hole: it goes).
        self.assertGreater(output.getSize(), coordinates.getSize() / 2)
        self.assertLessEqual(output.getSize(), coordinates.getSize())
        self.assertEqual(set(output.getUniqueValues(Coordinate3D.TOMO_ID_ATTR)), set(TEST))

    def _filter(self, label: str, formula: str):
        """pwem's ProtSetFilter on the cluster output, selected as the GUI does (by output name)."""
        protocol = self.proj.newProtocol(ProtSetFilter, objLabel=label, formula=formula)
        protocol.inputSet.set(self.steps["cluster"])
        protocol.inputSet.setExtended("coordinates")
        self.launchProtocol(protocol)
        return protocol.coordinates

    def test_coordinates_filtered_by_score_and_group_in_pwem(self):
        coordinates = self.steps["cluster"].coordinates
        first = self.classes[0]
        kept = self._filter("keep one class", f"item.{Coordinate3D.GROUP_ID_ATTR}.get() == {first['id']}")
        self.assertEqual(
            kept.getSize(), getattr(self.steps["cluster"], f"coordinates_{first['name']}").getSize()
        )
        scores = sorted(c.getScore() for c in coordinates)
        median = scores[len(scores) // 2]
        kept = self._filter("keep high scores", f"item._score.get() >= {median}")
        self.assertEqual(kept.getSize(), sum(s >= median for s in scores))


class TestTrainingContinues(BaseTest):
    """A training run stopped midway continues from its checkpoint when the user presses Continue."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_stop_then_continue(self):
        _, coordinates, targets = sphere_targets(self.proj, TINY, TRAIN_PATTERN)
        epochs = 6
        train = self.proj.newProtocol(
            DeepFinderProtTrain,
            inputLabelMaps=targets.labelMaps,
            inputCoordinates=coordinates,
            patchSize=24,
            shiftVoxels=6,
            batchSize=2,
            epochs=epochs,
            stepsPerEpoch=5,
            validationSteps=2,
        )
        self.proj.launchProtocol(train, wait=False)
        history = Path(train._getExtraPath("training", "history.json"))
        deadline = time.time() + 600
        while not (history.exists() and len(json.loads(history.read_text() or "[]")) >= 2):
            self.assertLess(time.time(), deadline, "training wrote no history")
            time.sleep(1)
        self.proj.stopProtocol(train)
        done_before = len(json.loads(history.read_text()))
        self.assertLess(done_before, epochs)

        train = self.proj.getProtocol(train.getObjId())
        train.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(train, wait=True)
        self.assertTrue(train.isFinished(), train.getStatus())
        rows = json.loads(history.read_text())
        self.assertEqual([row["epoch"] for row in rows], list(range(1, epochs + 1)))
        self.assertTrue(Path(train.model.getWeightsFile()).exists())
