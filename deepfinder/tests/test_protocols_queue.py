"""Scipion's queue engine on a real SLURM cluster: a whole run, or each step, sent with sbatch.

The hosts.conf queue section is the one ``deepfinder/headless_scipion.py`` writes (and
docs/gpus-and-clusters.md shows). These tests need SLURM (``sbatch`` and a cluster that answers
``sinfo``): as root, ``bash scripts/start_slurm.sh`` starts a single-node one. Without it they
skip, unless DEEPFINDER_REQUIRE_SLURM=1 (set by .ci/run), where they fail.
"""

import re
import subprocess
import time
from pathlib import Path

import pytest
from pyworkflow.protocol import MODE_RESUME
from pyworkflow.tests import BaseTest, setupTestProject

from deepfinder.headless_scipion import HOSTS_CONF
from deepfinder.protocols import (
    DeepFinderProtCluster,
    DeepFinderProtSegment,
    DeepFinderProtTrain,
)
from deepfinder.tests import TINY
from deepfinder.tests.slurm import (
    RUN_TIMEOUT_S,
    cancel_jobs_started_in,
    jobs_started_in,
    require_slurm,
    send_to_queue,
    submitted_jobs,
    wait_until_done,
)
from deepfinder.workflow import sphere_targets


def test_docs_show_the_tests_hosts_conf():
    page = Path(__file__).resolve().parents[2].joinpath("docs", "gpus-and-clusters.md").read_text()
    shown = re.search(r"```ini\n(.*?)```", page.split("## On a cluster", 1)[1], re.DOTALL)[1]
    assert shown == HOSTS_CONF


@pytest.mark.slow
class TestQueue(BaseTest):
    """Train submitted as one job; segmentation with one job per tomogram; scancel then Continue."""

    @classmethod
    def setUpClass(cls):
        require_slurm()
        setupTestProject(cls)
        cls.tomograms, cls.coordinates, cls.targets = sphere_targets(cls.proj, TINY, "tomo_00?.mrc")
        cls.tsIds = sorted(tomogram.getTsId() for tomogram in cls.tomograms)
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

    def test_segment_and_cluster_send_each_tomogram_as_its_own_job_gpus_renumbered_from_0(self):
        segment = self._segmentation("segment, one job per tomogram", gpuList="3")
        self.proj.launchProtocol(segment, wait=True)
        wait_until_done(self.proj, segment)

        self.assertTrue(self.proj.getProtocol(segment.getObjId()).isFinished(), segment.getErrorMessage())
        self.assertEqual(sorted(label_map_tsids(segment)), self.tsIds)
        jobs = submitted_jobs(segment)
        scripts = [Path(segment._getLogsPath(), name) for name in jobs]
        self.assertEqual(sorted(map(tomogram_of_job, scripts)), self.tsIds)
        self.assertEqual(len(set(jobs.values()) - {None}), len(self.tsIds), jobs)
        self.assertEqual(list(segment.getJobIds()), [])
        # GPU "3" of the form is the job's first GPU: the queue's gres decides which one that is.
        for script in scripts:
            output = script.with_suffix(".out").read_text() + script.with_suffix(".err").read_text()
            self.assertRegex(output, r"segment: started .* CUDA_VISIBLE_DEVICES=0\n")

        # The targets' label maps: those of a model trained for 6 steps are noise, slow to cluster.
        cluster = self.proj.newProtocol(
            DeepFinderProtCluster,
            objLabel="cluster, one job per label map",
            inputTomograms=self.tomograms,
            inputLabelMaps=self.targets.labelMaps,
            radii=", ".join(f"{c['radius_voxels'] * TINY.voxel_size():g}" for c in TINY.classes()),
        )
        send_to_queue(self.proj, cluster, one_job_per_step=True)
        self.proj.launchProtocol(cluster, wait=True)
        wait_until_done(self.proj, cluster)
        self.assertTrue(cluster.isFinished(), cluster.getErrorMessage())
        scripts = [Path(cluster._getLogsPath(), name) for name in submitted_jobs(cluster)]
        self.assertEqual(sorted(map(tomogram_of_job, scripts)), self.tsIds)
        for tsId in self.tsIds:
            self.assertTrue(Path(cluster._getExtraPath(f"{tsId}_particles.csv")).exists(), tsId)

    def test_scancel_midway_then_continue_segments_only_the_rest(self):
        segment = self._segmentation("segment, cancelled then continued")
        self.proj.launchProtocol(segment, wait=False)
        cancelled = cancel_a_running_job_once_one_tomogram_is_done(segment, self.tsIds)
        wait_until_done(self.proj, segment)
        self.assertTrue(segment.isFailed(), segment.getStatus())
        self.assertIn(f"Tomogram {cancelled}", segment.getErrorMessage())
        done = {tsId: labels_file(segment, tsId).stat().st_mtime_ns for tsId in label_map_tsids(segment)}
        self.assertNotIn(cancelled, done)
        self.assertTrue(done)

        segment = self.proj.getProtocol(segment.getObjId())
        segment.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(segment, wait=True)
        wait_until_done(self.proj, segment)

        self.assertTrue(segment.isFinished(), segment.getErrorMessage())
        registered = label_map_tsids(segment)
        self.assertEqual(sorted(registered), self.tsIds)  # complete, each tomogram once
        for tsId, written in done.items():  # not redone
            self.assertEqual(labels_file(segment, tsId).stat().st_mtime_ns, written, tsId)
        self.assertEqual(list(segment.getJobIds()), [])

    def _segmentation(self, label: str, **params):
        """A segmentation of the tomograms with the trained model, one SLURM job per tomogram."""
        segment = self.proj.newProtocol(
            DeepFinderProtSegment,
            objLabel=label,
            inputTomograms=self.tomograms,
            inputModel=self.train.model,
            **params,
        )
        send_to_queue(self.proj, segment, one_job_per_step=True)
        return segment


def label_map_tsids(segment) -> list[str]:
    """The tsId of each label map a segmentation registered (duplicates kept)."""
    return [label_map.getTsId() for label_map in getattr(segment, "labelMaps", None) or []]


def labels_file(segment, tsId: str) -> Path:
    return Path(segment._getExtraPath(f"{tsId}_labels.mrc"))


def tomogram_of_job(script: Path) -> str:
    """The tomogram (tsId) that a segmentation's or a clustering's job script works on."""
    command = script.read_text()
    named = re.search(r"--tomo-id (\w+)", command) or re.search(r"--tomogram \S*?(\w+)\.mrc", command)
    return named[1]


def cancel_a_running_job_once_one_tomogram_is_done(segment, tsIds: list[str]) -> str:
    """scancel the job of a tomogram not segmented yet, as soon as another one is; its tsId."""
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        if any(labels_file(segment, tsId).exists() for tsId in tsIds):
            for job, script in jobs_started_in(segment.getProject().path, states="RUNNING"):
                tsId = tomogram_of_job(script)
                if not labels_file(segment, tsId).exists():
                    subprocess.run(["scancel", job], check=True)
                    return tsId
        time.sleep(0.2)
    raise AssertionError(f"no job of {segment.getRunName()} to cancel after {RUN_TIMEOUT_S} s")
