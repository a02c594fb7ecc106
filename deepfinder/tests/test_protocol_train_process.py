"""The train protocol runs ``deepfinder train`` as a process of its own, with the run's GPU list."""

import argparse
import re
from pathlib import Path

import pytest
from pyworkflow.tests import BaseTest, setupTestProject

from deepfinder.core.cli import build_parser, setting_options, training_settings
from deepfinder.core.io import read_particles_csv
from deepfinder.core.settings import TrainingSettings
from deepfinder.protocols import DeepFinderProtGenerateTargets, DeepFinderProtTrain
from deepfinder.tests import TINY
from deepfinder.workflow import import_class_coordinates, import_tomograms, launch

TRAIN_PATTERN = "tomo_00[01].mrc"


@pytest.mark.parametrize(
    "settings",
    [
        TrainingSettings(),
        TrainingSettings(
            patch_size=24,
            batch_size=3,
            epochs=2,
            steps_per_epoch=7,
            validation_steps=1,
            loss="dice",
            learning_rate=3e-4,
            final_learning_rate=1e-5,
            bootstrap=False,
            shift_voxels=5,
            seed=9,
            precision="float32",
        ),
    ],
)
def test_setting_options_give_the_engine_every_setting(settings):
    inputs = [
        "--tomograms",
        "t.mrc",
        "--labels",
        "l.mrc",
        "--particles",
        "p.csv",
        "--classes",
        "2",
        "--out",
        "o",
    ]
    args = build_parser().parse_args(["train", *inputs, "--out", "o", *setting_options("train", settings)])
    # Every setting is given, so the preset (which changes the defaults) does not matter.
    for preset in ("cpu", "gpu"):
        assert training_settings(argparse.Namespace(**{**vars(args), "preset": preset})) == settings


@pytest.mark.slow
class TestTrainProcess(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_training_runs_as_its_own_process_on_the_gpus_of_the_run(self):
        tomograms = import_tomograms(self.proj, TINY, TRAIN_PATTERN, "tomograms").Tomograms
        coordinates = import_class_coordinates(self.proj, TINY, tomograms, "particles")
        targets = launch(
            self.proj,
            DeepFinderProtGenerateTargets,
            "targets",
            inputTomograms=tomograms,
            inputCoordinates=coordinates,
            radii=", ".join(f"{c['radius_voxels']:g}" for c in TINY.classes()),
            radiusInPixels=True,
        )
        train = launch(
            self.proj,
            DeepFinderProtTrain,
            "train",
            inputLabelMaps=targets.labelMaps,
            inputCoordinates=coordinates,
            patchSize=24,
            shiftVoxels=6,
            batchSize=2,
            epochs=1,
            stepsPerEpoch=2,
            validationSteps=1,
            gpuList="0 1",
        )
        log = Path(self.proj.path, train.getStdoutLog()).read_text()
        started = re.search(r"deepfinder train: started .*, pid (\d+) on .*, CUDA_VISIBLE_DEVICES=(\S*)", log)
        self.assertIsNotNone(started, log[-3000:])
        self.assertNotEqual(int(started[1]), train.getPid())
        self.assertEqual(started[2], "0,1")
        self.assertIn("epoch 1/1 step 2/2", log)

        # The particle tables the engine read, one per tomogram, hold every input particle.
        tables = sorted(Path(train._getExtraPath("particles")).glob("*.csv"))
        self.assertEqual([table.stem for table in tables], ["tomo_000", "tomo_001"])
        self.assertEqual(
            sum(len(read_particles_csv(table)) for table in tables),
            sum(coordinate_set.getSize() for coordinate_set in train._coordinateSets()),
        )
        self.assertTrue(Path(train.model.getWeightsFile()).exists())
        self.assertEqual(Path(train._getExtraPath("learning_curves.png")).read_bytes()[:4], b"\x89PNG")
