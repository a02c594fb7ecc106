"""The train protocol runs ``deepfinder train`` as a process of its own, with the run's GPU list."""

import argparse
import re
from pathlib import Path

import pytest
from pyworkflow.tests import BaseTest, setupTestProject

from deepfinder.core.cli import build_parser
from deepfinder.core.commands.train import training_settings
from deepfinder.core.errors import InputError
from deepfinder.core.model import read_metadata
from deepfinder.core.settings import TrainingSettings, write_settings
from deepfinder.core.tables import csv as particle_csv
from deepfinder.protocols import DeepFinderProtTrain
from deepfinder.tests import TINY
from deepfinder.workflow import launch, sphere_targets

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
            binning=2,
            seed=9,
            precision="float32",
        ),
    ],
)
def test_the_settings_file_gives_the_engine_every_training_setting(settings, tmp_path):
    write_settings(tmp_path / "train.json", settings)
    inputs = ["--tomograms", "t.mrc", "--labels", "l.mrc", "--particles", "p.csv", "--classes", "2"]
    args = build_parser().parse_args(
        ["train", *inputs, "--out", "o", "--settings", str(tmp_path / "train.json")]
    )
    assert training_settings(args) == settings
    with pytest.raises(InputError, match="--preset and --settings"):
        training_settings(argparse.Namespace(**{**vars(args), "preset": "gpu"}))


@pytest.mark.slow
class TestTrainProcess(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        _, cls.coordinates, cls.targets = sphere_targets(cls.proj, TINY, TRAIN_PATTERN)

    def _train(self, label: str, **gpus):
        """A one-epoch training run, and the pid and CUDA_VISIBLE_DEVICES of its engine process."""
        train = launch(
            self.proj,
            DeepFinderProtTrain,
            label,
            inputLabelMaps=self.targets.labelMaps,
            inputCoordinates=self.coordinates,
            patchSize=24,
            shiftVoxels=6,
            batchSize=2,
            epochs=1,
            stepsPerEpoch=2,
            validationSteps=1,
            **gpus,
        )
        log = Path(self.proj.path, train.getStdoutLog()).read_text()
        started = re.search(r"deepfinder train: started .*, pid (\d+) on .*, CUDA_VISIBLE_DEVICES=(\S*)", log)
        self.assertIsNotNone(started, log[-3000:])
        self.assertIn("epoch 1/1 step 2/2", log)
        return train, int(started[1]), started[2]

    def test_training_runs_as_its_own_process_on_the_gpus_of_the_run(self):
        train, pid, gpus = self._train("on two GPUs", gpuList="0 1")
        self.assertNotEqual(pid, train.getPid())
        self.assertEqual(gpus, "0,1")
        # The particle tables the engine read, one per tomogram, hold every input particle.
        tables = sorted(Path(train._getExtraPath("particles")).glob("*.csv"))
        self.assertEqual([table.stem for table in tables], ["tomo_000", "tomo_001"])
        self.assertEqual(
            sum(len(particle_csv.read(table).particles) for table in tables),
            sum(coordinate_set.getSize() for coordinate_set in train._coordinateSets()),
        )
        self.assertTrue(Path(train.model.getWeightsFile()).exists())
        self.assertEqual(Path(train._getExtraPath("learning_curves.png")).read_bytes()[:4], b"\x89PNG")

    def test_without_use_gpu_training_sees_no_gpu(self):
        _, _, gpus = self._train("on the CPU", useGpu=False, gpuList="0 1")
        self.assertEqual(gpus, "")

    def test_binning_2_trains_a_coarse_model_at_twice_the_sampling_rate(self):
        train, _, _ = self._train("binned by 2", useGpu=False, binning=1)
        log = Path(self.proj.path, train.getStdoutLog()).read_text()
        self.assertIn("binning the tomogram and its label map by 2", log)
        self.assertIn("patches of the tomograms binned by 2", train.methods()[0])
        self.assertAlmostEqual(train.model.getSamplingRate(), 2 * self.targets.labelMaps.getSamplingRate())
        self.assertEqual(
            read_metadata(train.model.getWeightsFile())["voxel_size"], train.model.getSamplingRate()
        )
