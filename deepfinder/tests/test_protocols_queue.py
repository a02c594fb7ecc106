"""Scipion's queue engine on a real SLURM cluster: a whole run, or each step, sent with sbatch.

The hosts.conf queue section is the one ``deepfinder/headless_scipion.py`` writes (and the README
shows). These tests need SLURM (``sbatch`` and a cluster that answers ``sinfo``): as root,
``bash scripts/start_slurm.sh`` starts a single-node one. Without it they skip, unless
DEEPFINDER_REQUIRE_SLURM=1 (set by .ci/run), where they fail.
"""

import os
import re
import shutil
import subprocess
import time
import unittest
from pathlib import Path

import pytest
from pyworkflow.tests import BaseTest, setupTestProject

from deepfinder.protocols import DeepFinderProtGenerateTargets, DeepFinderProtTrain
from deepfinder.tests import TINY
from deepfinder.workflow import import_class_coordinates, import_tomograms, launch

pytestmark = pytest.mark.slow

QUEUE = "debug"  # the queue of the tests' hosts.conf, a partition of scripts/start_slurm.sh's cluster
RUN_TIMEOUT_S = 900
# The line the hosts.conf job template writes first into each job's output.
JOB_START = re.compile(r"^SLURM job (?P<id>\d+) on ", re.MULTILINE)


def require_slurm() -> None:
    """Skip (or, with DEEPFINDER_REQUIRE_SLURM=1, fail) unless a SLURM cluster answers here."""
    if shutil.which("sbatch") is None:
        problem = "sbatch is absent"
    elif subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        problem = "sbatch is installed but the cluster does not answer sinfo"
    else:
        return
    reason = f"SLURM queue tests need a SLURM cluster: {problem} (as root: bash scripts/start_slurm.sh)"
    if os.environ.get("DEEPFINDER_REQUIRE_SLURM") == "1":
        raise AssertionError(f"{reason}; DEEPFINDER_REQUIRE_SLURM=1 forbids skipping")
    raise unittest.SkipTest(reason)


def send_to_queue(project, protocol, one_job_per_step: bool = False, **queue_values) -> None:
    """Set a protocol as the form does for "Use a queue engine? Yes" and the queue dialog's values."""
    queues = project.getHostConfig(protocol.getHostName()).getQueueSystem().getQueues()
    values = {name: default for name, default, *_ in queues[QUEUE]}
    values.update(queue_values, QUEUE_FOR_JOBS="Y" if one_job_per_step else "N")
    protocol._useQueue.set(True)
    protocol.setQueueParams([QUEUE, values])


def wait_until_done(project, protocol, timeout_s: float = RUN_TIMEOUT_S) -> None:
    """Refresh a launched protocol from its run database, as the GUI does, until it is no longer active."""
    deadline = time.monotonic() + timeout_s
    project._updateProtocol(protocol)
    while protocol.isActive():
        if time.monotonic() > deadline:
            raise AssertionError(f"{protocol.getRunName()} still {protocol.getStatus()} after {timeout_s} s")
        time.sleep(1)
        project._updateProtocol(protocol)


def submitted_jobs(protocol) -> dict[str, str]:
    """The SLURM job id that ran each job script Scipion wrote for ``protocol`` (name -> id).

    Scipion writes the scripts in the run's logs/ folder; each job's first output line
    (from the hosts.conf template) names the job id SLURM gave it.
    """
    jobs = {}
    for script in sorted(Path(protocol._getLogsPath()).glob("*.job")):
        output = script.with_suffix(".out")
        started = JOB_START.search(output.read_text()) if output.exists() else None
        jobs[script.name] = started["id"] if started else None
    return jobs


def cancel_jobs_started_in(folder: str) -> None:
    """scancel every queued or running job submitted from ``folder`` (a test project's)."""
    listing = subprocess.run(["squeue", "-h", "-o", "%i %Z"], capture_output=True, text=True).stdout
    ids = [
        job for job, workdir in (line.split(maxsplit=1) for line in listing.splitlines()) if workdir == folder
    ]
    if ids:
        subprocess.run(["scancel", *ids], check=False)


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
