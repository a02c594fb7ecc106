"""Scipion's queue engine on a real SLURM cluster: a whole run, or each step, sent with sbatch.

The hosts.conf queue section is the one ``deepfinder/headless_scipion.py`` writes (and the README
shows). These tests need SLURM (``sbatch`` and a cluster that answers ``sinfo``): as root,
``bash scripts/start_slurm.sh`` starts a single-node one. Without it they skip, unless
DEEPFINDER_REQUIRE_SLURM=1 (set by .ci/run), where they fail.
"""

from pathlib import Path

import pytest
from pyworkflow.tests import BaseTest, setupTestProject

from deepfinder.protocols import DeepFinderProtGenerateTargets, DeepFinderProtTrain
from deepfinder.tests import TINY
from deepfinder.tests.slurm import (
    cancel_jobs_started_in,
    require_slurm,
    send_to_queue,
    submitted_jobs,
    wait_until_done,
)
from deepfinder.workflow import import_class_coordinates, import_tomograms, launch

pytestmark = pytest.mark.slow


class TestQueue(BaseTest):
    """Train submitted as one job; segmentation with one job per tomogram; scancel then Continue."""

    @classmethod
    def setUpClass(cls):
        require_slurm()
        setupTestProject(cls)
        cls.tomograms = import_tomograms(cls.proj, TINY, "tomo_*.mrc", "tomograms").Tomograms
        cls.coordinates = import_class_coordinates(cls.proj, TINY, cls.tomograms, "particles")
        radii = ", ".join(f"{c['radius_voxels']:g}" for c in TINY.classes())
        cls.targets = launch(
            cls.proj,
            DeepFinderProtGenerateTargets,
            "targets",
            inputTomograms=cls.tomograms,
            inputCoordinates=cls.coordinates,
            radii=radii,
            radiusInPixels=True,
        )
        cls.train = cls.proj.newProtocol(
            DeepFinderProtTrain,
            objLabel="train on SLURM",
            inputLabelMaps=cls.targets.labelMaps,
            inputCoordinates=cls.coordinates,
            patchSize=24,
            shiftVoxels=6,
            batchSize=2,
            epochs=2,
            stepsPerEpoch=3,
            validationSteps=1,
        )
        send_to_queue(cls.proj, cls.train)
        cls.proj.launchProtocol(cls.train)
        cls.train_job_ids = list(cls.train.getJobIds())
        wait_until_done(cls.proj, cls.train)

    @classmethod
    def tearDownClass(cls):
        if hasattr(cls, "proj"):
            cancel_jobs_started_in(cls.proj.path)

    def test_train_runs_as_one_slurm_job_and_registers_its_model(self):
        self.assertTrue(self.train.isFinished(), self.train.getErrorMessage())
        self.assertTrue(Path(self.train.model.getWeightsFile()).exists())
        self.assertEqual(len(self.train.model.getClassNames()), 1 + len(TINY.classes()))
        jobs = submitted_jobs(self.train)
        self.assertEqual(list(jobs.values()), [str(job) for job in self.train_job_ids], jobs)
        script = Path(self.train._getLogsPath(), next(iter(jobs))).read_text()
        self.assertIn("#SBATCH --partition=debug", script)
        self.assertIn("pw_protocol_run.py", script)  # the whole run, not one step
