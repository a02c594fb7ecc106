"""Segment and cluster run the engine as one process per step (``deepfinder`` via ``runJob``).

In a real Scipion project with tiny tomograms and an untrained model (what is tested
is where and how the engine runs, not what it finds): parallel steps are parallel
processes, one GPU each; a failing step leaves the run failed with the engine's
one-line reason, and Continue after the fix finishes only what was left.
No GPU is needed: TensorFlow runs on the CPU whatever CUDA_VISIBLE_DEVICES says.
"""

from __future__ import annotations

import os
import re
import shutil
from datetime import datetime
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from pyworkflow.protocol import MODE_RESUME
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.protocols import ProtImportTomomasks

from deepfinder.core import io
from deepfinder.core.cli import build_parser, main
from deepfinder.core.commands.segment import segmentation_settings
from deepfinder.core.model import build_unet, save_model
from deepfinder.core.settings import SegmentationSettings, TrainingSettings, write_settings
from deepfinder.core.tables import csv as particle_csv
from deepfinder.protocols import DeepFinderProtCluster, DeepFinderProtImportModel, DeepFinderProtSegment
from deepfinder.tests.projects import import_tomograms

VOXEL_SIZE = 10.0
SHAPE_ZYX = (16, 32, 32)
TSIDS = ("ta", "tb", "tc")

_STARTED = re.compile(
    r"deepfinder (?P<command>\w+): started (?P<time>\S+), pid (?P<pid>\d+) on \S+, "
    r"CUDA_VISIBLE_DEVICES=(?P<gpus>\S*)"
)
_COLOUR = re.compile(r"\x1b\[[0-9;]*m")
_FINISHED = re.compile(r"deepfinder (?P<command>\w+): finished (?P<time>\S+) after")


@pytest.mark.parametrize(
    "settings",
    [
        SegmentationSettings(),
        SegmentationSettings(
            patch_size=48,
            crop_voxels=2,
            batch_size=3,
            bin_scores=True,
            average_rotations=True,
            precision="float32",
        ),
    ],
)
def test_segmentation_settings_go_through_the_settings_file_unchanged(settings, tmp_path):
    write_settings(tmp_path / "segment.json", settings)
    inputs = ["--tomogram", "t.mrc", "--model", "m.h5", "--labels", "l.mrc"]
    args = build_parser().parse_args(["segment", *inputs, "--settings", str(tmp_path / "segment.json")])
    assert segmentation_settings(args) == settings


def test_an_option_given_replaces_the_settings_file_value(tmp_path):
    write_settings(tmp_path / "segment.json", SegmentationSettings(patch_size=64, batch_size=3))
    inputs = ["--tomogram", "t.mrc", "--model", "m.h5", "--labels", "l.mrc"]
    args = build_parser().parse_args(
        ["segment", *inputs, "--settings", str(tmp_path / "segment.json"), "--patch-size", "32"]
    )
    assert segmentation_settings(args) == SegmentationSettings(patch_size=32, batch_size=3)


def test_a_settings_file_of_another_stage_is_refused_naming_the_file(tmp_path, capsys):
    write_settings(tmp_path / "train.json", TrainingSettings())
    inputs = ["--tomogram", "t.mrc", "--model", "m.h5", "--labels", "l.mrc"]
    with pytest.raises(SystemExit) as exit_:
        main(["segment", "--quiet", *inputs, "--settings", str(tmp_path / "train.json")])
    assert exit_.value.code == 2
    assert "train.json: not a file of SegmentationSettings" in capsys.readouterr().err


def _balls(shape_zyx, centres: dict, radius: float = 2.0) -> np.ndarray:
    """A label map with a ball of class ``centres[(z, y, x)]`` at each centre."""
    labels = np.zeros(shape_zyx, np.int8)
    zyx = np.indices(shape_zyx)
    for centre, class_id in centres.items():
        labels[sum((zyx[i] - centre[i]) ** 2 for i in range(3)) <= radius**2] = class_id
    return labels


def test_cluster_writes_positions_and_sizes_in_voxels_of_the_tomogram(tmp_path):
    centres = {(4, 4, 4): 1, (4, 11, 11): 1, (4, 4, 11): 2}
    io.write_volume(tmp_path / "binned.mrc", _balls((8, 16, 16), centres), 2 * VOXEL_SIZE)
    main(
        ["cluster", "--labels", str(tmp_path / "binned.mrc"), "--radius", "2", "--min-size", "1"]
        + ["--label-scale", "2", "--sizes", str(tmp_path / "sizes.txt"), "--output", str(tmp_path / "p.csv")]
    )
    particles = particle_csv.read(tmp_path / "p.csv").particles
    # Binned voxel k is tomogram voxels 2k and 2k + 1: centre 2k + 0.5.
    expected = sorted((2 * x + 0.5, 2 * y + 0.5, 2 * z + 0.5) for z, y, x in centres)
    np.testing.assert_allclose(sorted(map(tuple, particles.xyz)), expected, atol=0.01)
    sizes = np.loadtxt(tmp_path / "sizes.txt", ndmin=1)
    assert len(sizes) == len(centres) and (sizes == np.count_nonzero(_balls((9, 9, 9), {(4, 4, 4): 1}))).all()


def _engine_runs(log_text: str, command: str) -> tuple[list[dict], list[datetime]]:
    """The ``started`` lines (time, pid, gpus) and finish times of ``deepfinder <command>`` in a log."""
    started = [m.groupdict() for m in _STARTED.finditer(log_text) if m["command"] == command]
    for run in started:
        run["time"] = datetime.fromisoformat(run["time"])
    finished = [
        datetime.fromisoformat(m["time"]) for m in _FINISHED.finditer(log_text) if m["command"] == command
    ]
    return started, finished


def _most_at_once(starts: list[datetime], ends: list[datetime]) -> int:
    """The largest number of runs going on at the same time (the start and end lines need no pairing)."""
    events = sorted([(t, 1) for t in starts] + [(t, -1) for t in ends], key=lambda e: (e[0], e[1]))
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    return most


def _write_tomogram(path, seed: int, shape=SHAPE_ZYX) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.random.default_rng(seed).normal(size=shape).astype(np.float32))
        mrc.voxel_size = VOXEL_SIZE


@pytest.mark.slow
class TestEngineProcesses(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        for seed, tsId in enumerate(TSIDS):
            _write_tomogram(cls.getOutputPath(f"{tsId}.mrc"), seed)
        cls.tomograms = import_tomograms(cls, "t?.mrc", VOXEL_SIZE)
        cls.weights = str(
            save_model(
                build_unet(3),
                cls.getOutputPath("model.weights.h5"),
                {"class_names": ["background", "a", "b"], "voxel_size": VOXEL_SIZE},
            )
        )
        cls.model = cls.launchProtocol(
            cls.newProtocol(DeepFinderProtImportModel, weightsFile=cls.weights)
        ).model

    def _segment(self, label: str, **params):
        protocol = self.newProtocol(
            DeepFinderProtSegment,
            objLabel=label,
            inputTomograms=self.tomograms,
            inputModel=self.model,
            **params,
        )
        self.proj.launchProtocol(protocol, wait=True)
        return self.proj.getProtocol(protocol.getObjId())

    def _continue(self, protocol):
        protocol.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(protocol, wait=True)
        return self.proj.getProtocol(protocol.getObjId())

    def _log(self, protocol) -> str:
        return Path(self.proj.path, protocol.getStdoutLog()).read_text(errors="replace")

    def _assert_complete(self, protocol):
        self.assertTrue(protocol.isFinished(), protocol.getErrorMessage())
        label_maps = protocol.labelMaps
        tsIds = [label_map.getTsId() for label_map in label_maps]
        self.assertEqual(sorted(tsIds), sorted(TSIDS))  # each once
        self.assertTrue(label_maps.isStreamClosed())
        for label_map in label_maps:
            self.assertEqual(io.read_volume(label_map.getFileName()).shape, SHAPE_ZYX)

    def test_two_gpus_segment_two_tomograms_at_once_one_gpu_each(self):
        # 3 Scipion threads: the main one and 2 that run steps, one GPU slot each.
        segment = self._segment("2 GPUs", numberOfThreads=3, gpuList="0 1")
        self._assert_complete(segment)
        started, finished = _engine_runs(self._log(segment), "segment")
        self.assertEqual(len(started), len(TSIDS))
        self.assertEqual(len(finished), len(TSIDS))
        self.assertEqual(len({run["pid"] for run in started}), len(TSIDS))
        self.assertEqual({run["gpus"] for run in started}, {"0", "1"})
        self.assertEqual(_most_at_once([run["time"] for run in started], finished), 2)

    def test_without_gpu_the_engine_sees_none(self):
        segment = self._segment("CPU", useGpu=False, saveScores=False)
        self._assert_complete(segment)
        started, _ = _engine_runs(self._log(segment), "segment")
        self.assertEqual({run["gpus"] for run in started}, {""})

    def test_a_coarse_model_reaches_the_engine_and_changes_the_labels(self):
        from deepfinder.core.segment import segment_tomogram

        coarse_weights = save_model(
            build_unet(3),
            self.getOutputPath("coarse.weights.h5"),
            {"class_names": ["background", "a", "b"], "voxel_size": 2 * VOXEL_SIZE},
        )
        coarse = self.launchProtocol(
            self.newProtocol(DeepFinderProtImportModel, weightsFile=str(coarse_weights))
        ).model
        segment = self._segment("coarse model", useGpu=False, saveScores=False, coarseModel=coarse)
        self._assert_complete(segment)
        self.assertIn("twice the pixel size", segment.methods()[0])
        for label_map in segment.labelMaps:
            tomogram = self.getOutputPath(f"{label_map.getTsId()}.mrc")
            expected = segment_tomogram(
                tomogram,
                self.weights,
                self.getOutputPath(f"{label_map.getTsId()}_expected.mrc"),
                coarse_weights_path=coarse_weights,
            )
            plain = segment_tomogram(
                tomogram, self.weights, self.getOutputPath(f"{label_map.getTsId()}_plain.mrc")
            )
            labels = io.read_volume(label_map.getFileName())
            np.testing.assert_array_equal(labels, io.read_volume(expected["labels"]))
            self.assertGreater(np.mean(labels != io.read_volume(plain["labels"])), 0.01)

    def test_a_corrupt_tomogram_fails_the_run_then_continue_does_only_the_rest(self):
        tomogram = self.getOutputPath("tc.mrc")
        shutil.copy(tomogram, tomogram + ".good")
        with open(tomogram, "r+b") as file:  # cut short: the header promises more than there is
            file.truncate(os.path.getsize(tomogram) // 2)
        try:
            segment = self._segment("corrupt tomogram")
        finally:
            os.replace(tomogram + ".good", tomogram)
        self.assertTrue(segment.isFailed(), segment.getStatus())
        reason = segment.getErrorMessage()
        self.assertRegex(reason, r"Tomogram tc: deepfinder segment: error: .*tc\.mrc")
        self.assertEqual(len(reason.splitlines()), 1, reason)
        self._assert_reason_ends_the_logs(segment, "Tomogram tc: deepfinder segment: error:")
        done = {m.getTsId(): m.getFileName() for m in segment.labelMaps}
        self.assertEqual(sorted(done), ["ta", "tb"])
        mtimes = {tsId: os.stat(path).st_mtime_ns for tsId, path in done.items()}

        segment = self._continue(segment)
        self._assert_complete(segment)
        self.assertEqual({tsId: os.stat(path).st_mtime_ns for tsId, path in done.items()}, mtimes)
        started, _ = _engine_runs(self._log(segment), "segment")
        self.assertEqual(len(started), len(TSIDS) + 1)  # 3 in the first run, tc again

    def test_a_corrupt_model_fails_the_run_with_its_name_then_continue_completes_it(self):
        # The form checks that the weights file exists, not what it holds.
        weights = os.path.join(self.proj.path, self.model.getWeightsFile())
        os.replace(weights, weights + ".good")
        Path(weights).write_bytes(b"not an HDF5 file")
        try:
            segment = self._segment("corrupt model", numberOfThreads=3, gpuList="0 1")
        finally:
            os.replace(weights + ".good", weights)
        self.assertTrue(segment.isFailed(), segment.getStatus())
        # Two steps ran at once and both failed: the run's reason is one of them.
        reason = r"Tomogram t[ab]: deepfinder segment: error: .*model\.weights\.h5"
        self.assertRegex(segment.getErrorMessage(), reason)
        self._assert_reason_ends_the_logs(segment, reason)

        segment = self._continue(segment)
        self._assert_complete(segment)

    def _assert_reason_ends_the_logs(self, protocol, reason: str):
        """Each run log (stdout, stderr) ends with the engine's one-line reason; no traceback."""
        for log in (protocol.getStdoutLog(), protocol.getStderrLog()):
            text = _COLOUR.sub("", Path(self.proj.path, log).read_text(errors="replace"))
            self.assertRegex(text.strip().splitlines()[-1], reason, log)
            self.assertNotIn("Traceback", text, log)

    def test_cluster_runs_one_engine_process_per_label_map(self):
        centres = {(8, 8, 8): 1, (8, 20, 20): 1, (8, 8, 24): 2}
        os.makedirs(self.getOutputPath("masks"), exist_ok=True)
        for tsId in TSIDS:
            io.write_volume(
                self.getOutputPath("masks", f"{tsId}.mrc"), _balls(SHAPE_ZYX, centres), VOXEL_SIZE
            )
        label_maps = self.launchProtocol(
            self.newProtocol(
                ProtImportTomomasks,
                filesPath=self.getOutputPath("masks"),
                filesPattern="t?.mrc",
                inputTomos=self.tomograms,
            )
        ).tomomasks
        cluster = self.launchProtocol(
            self.newProtocol(
                DeepFinderProtCluster,
                inputTomograms=self.tomograms,
                inputLabelMaps=label_maps,
                radii=f"{2 * VOXEL_SIZE:g}, {2 * VOXEL_SIZE:g}",
                minSizes="1, 1",
                numberOfThreads=3,
            )
        )
        started, finished = _engine_runs(self._log(cluster), "cluster")
        self.assertEqual((len(started), len(finished)), (len(TSIDS), len(TSIDS)))
        found = {tsId: [] for tsId in TSIDS}
        for coordinate in cluster.coordinates.iterCoordinates():
            found[coordinate.getTomoId()].append(coordinate.getPosition(BOTTOM_LEFT_CORNER))
        expected = sorted((float(x), float(y), float(z)) for z, y, x in centres)
        for tsId in TSIDS:
            np.testing.assert_allclose(sorted(found[tsId]), expected, atol=0.01, err_msg=tsId)
        self.assertEqual(cluster.coordinates_class1.getSize(), 2 * len(TSIDS))
