"""Segment and cluster on tomograms that arrive while they run (Scipion streaming), in a real project.

The producer is an import run whose output set stays open while tomograms are added to it
one at a time, as an import during acquisition does: segment follows it, cluster follows
segment. The model is untrained (what is tested is which tomograms are processed, when,
and how often, not what is found).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest
from pyworkflow.protocol import MODE_RESUME
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.objects import SetOfTomograms, Tomogram
from tomo.protocols import ProtImportTomograms

from deepfinder.core.model import build_unet, save_model
from deepfinder.core.tables import csv as particle_csv
from deepfinder.protocols import DeepFinderProtCluster, DeepFinderProtImportModel, DeepFinderProtSegment
from deepfinder.protocols.streaming import tsids_done
from deepfinder.tests.slurm import wait_until_done

pytestmark = pytest.mark.slow

VOXEL_SIZE = 10.0
SHAPE_ZYX = (16, 32, 32)
TSIDS = ("ta", "tb", "tc")
WAIT_S = 300
_STARTED = re.compile(r"deepfinder (\w+): started ")


class _Acquisition:
    """An import run of tomograms whose output set stays open while tomograms are added to it."""

    def __init__(self, test: BaseTest):
        self.test = test
        self.run = test.newProtocol(ProtImportTomograms, objLabel="acquisition", samplingRate=VOXEL_SIZE)
        test.proj.saveProtocol(self.run)
        self.run.makePathsAndClean()
        self.run.setRunning()
        self.tomograms = SetOfTomograms.create(self.run._getPath(), template="tomograms%s.sqlite")
        self.tomograms.setSamplingRate(VOXEL_SIZE)
        self.tomograms.setStreamState(SetOfTomograms.STREAM_OPEN)

    def add(self, tsId: str, seed: int) -> None:
        """Write a tomogram and append it to the open set (the set is defined with the first one)."""
        path = self.run._getExtraPath(f"{tsId}.mrc")
        with mrcfile.new(path, overwrite=True) as mrc:
            mrc.set_data(np.random.default_rng(seed).normal(size=SHAPE_ZYX).astype(np.float32))
            mrc.voxel_size = VOXEL_SIZE
        tomogram = Tomogram(location=path)
        tomogram.setTsId(tsId)
        tomogram.setSamplingRate(VOXEL_SIZE)
        self.tomograms.enableAppend()
        self.tomograms.append(tomogram)
        self.tomograms.write()
        if self.run.Tomograms is None:
            self.run._defineOutputs(Tomograms=self.tomograms)
        self.run._store(self.run.Tomograms)

    def close(self) -> None:
        self.tomograms.setStreamState(SetOfTomograms.STREAM_CLOSED)
        self.tomograms.write()
        self.run.Tomograms.setStreamState(SetOfTomograms.STREAM_CLOSED)
        self.run.setFinished()
        self.run._store()


class TestStreaming(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        weights = save_model(
            build_unet(3),
            cls.getOutputPath("model.weights.h5"),
            {"class_names": ["background", "a", "b"], "voxel_size": VOXEL_SIZE},
        )
        cls.model = cls.launchProtocol(
            cls.newProtocol(DeepFinderProtImportModel, weightsFile=str(weights))
        ).model

    def _wait_for(self, protocol, condition, what: str):
        """Refresh ``protocol`` from its run database until ``condition(protocol)`` holds."""
        deadline = time.monotonic() + WAIT_S
        while True:
            self.proj._updateProtocol(protocol)
            if condition(protocol):
                return
            self.assertTrue(
                protocol.isActive(), f"{protocol.getRunName()} ended ({protocol.getStatus()}) {what}"
            )
            self.assertLess(time.monotonic(), deadline, f"{protocol.getRunName()}: {what}")
            time.sleep(1)

    def _engine_starts(self, protocol, command: str) -> int:
        log = Path(self.proj.path, protocol.getStdoutLog()).read_text(errors="replace")
        return sum(1 for match in _STARTED.finditer(log) if match[1] == command)

    def test_arriving_tomograms_are_segmented_and_clustered_once_and_the_outputs_close(self):
        acquisition = _Acquisition(self)
        acquisition.add(TSIDS[0], seed=0)
        segment = self.newProtocol(
            DeepFinderProtSegment,
            inputTomograms=acquisition.run.Tomograms,
            inputModel=self.model,
            saveScores=False,
        )
        self.proj.launchProtocol(segment, wait=False)
        self._wait_for(segment, lambda p: p.hasAttribute("labelMaps"), "segmented nothing")
        self.assertTrue(segment.labelMaps.isStreamOpen())
        cluster = self.newProtocol(
            DeepFinderProtCluster,
            inputTomograms=acquisition.run.Tomograms,
            inputLabelMaps=segment.labelMaps,
            radii=f"{2 * VOXEL_SIZE:g}",
        )
        self.proj.launchProtocol(cluster, wait=False)

        acquisition.add(TSIDS[1], seed=1)
        self._wait_for(segment, lambda p: p.labelMaps.getSize() == 2, "did not segment the second tomogram")
        self._wait_for(cluster, lambda p: len(tsids_done(getattr(p, "coordinates", None))) == 2, "lags")
        self.assertTrue(cluster.coordinates.isStreamOpen())
        for tsId in TSIDS[2:]:
            acquisition.add(tsId, seed=TSIDS.index(tsId))
        acquisition.close()
        wait_until_done(self.proj, segment)
        wait_until_done(self.proj, cluster)

        self.assertTrue(segment.isFinished(), segment.getErrorMessage())
        self.assertTrue(cluster.isFinished(), cluster.getErrorMessage())
        self.assertEqual(sorted(m.getTsId() for m in segment.labelMaps), list(TSIDS))
        self.assertTrue(segment.labelMaps.isStreamClosed())
        self.assertEqual(self._engine_starts(segment, "segment"), len(TSIDS))
        self.assertEqual(self._engine_starts(cluster, "cluster"), len(TSIDS))
        for output in (cluster.coordinates, cluster.coordinates_a, cluster.coordinates_b):
            self.assertTrue(output.isStreamClosed(), output)
        # Each tomogram's particles are in the output once: as many as its clustering found.
        found = {tsId: 0 for tsId in TSIDS}
        for coordinate in cluster.coordinates.iterCoordinates():
            found[coordinate.getTomoId()] += 1
        expected = {
            tsId: len(particle_csv.read(cluster._getExtraPath(f"{tsId}_particles.csv")).particles)
            for tsId in TSIDS
        }
        self.assertEqual(found, expected)
        self.assertTrue(all(expected.values()), expected)
        per_class = cluster.coordinates_a.getSize() + cluster.coordinates_b.getSize()
        self.assertEqual(per_class, sum(found.values()))

        # Continued once finished, it finds every tomogram done: no clustering, no duplicate.
        cluster = self.proj.getProtocol(cluster.getObjId())
        cluster.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(cluster, wait=True)
        wait_until_done(self.proj, cluster)
        self.assertTrue(cluster.isFinished(), cluster.getErrorMessage())
        self.assertEqual(self._engine_starts(cluster, "cluster"), len(TSIDS))
        self.assertEqual(cluster.coordinates.getSize(), sum(found.values()))

    def test_a_run_stopped_mid_stream_and_continued_does_not_redo_finished_tomograms(self):
        acquisition = _Acquisition(self)
        acquisition.add(TSIDS[0], seed=0)
        acquisition.add(TSIDS[1], seed=1)
        segment = self.newProtocol(
            DeepFinderProtSegment,
            objLabel="stopped mid-stream",
            inputTomograms=acquisition.run.Tomograms,
            inputModel=self.model,
            saveScores=False,
        )
        self.proj.launchProtocol(segment, wait=False)
        self._wait_for(
            segment, lambda p: getattr(p, "labelMaps", None) and p.labelMaps.getSize() == 2, "stuck"
        )
        self.proj.stopProtocol(segment)
        written = {m.getTsId(): Path(m.getFileName()).stat().st_mtime_ns for m in segment.labelMaps}

        segment = self.proj.getProtocol(segment.getObjId())
        segment.runMode.set(MODE_RESUME)
        self.proj.launchProtocol(segment, wait=False)
        acquisition.add(TSIDS[2], seed=2)
        acquisition.close()
        wait_until_done(self.proj, segment)

        self.assertTrue(segment.isFinished(), segment.getErrorMessage())
        self.assertEqual(sorted(m.getTsId() for m in segment.labelMaps), list(TSIDS))
        self.assertTrue(segment.labelMaps.isStreamClosed())
        for tsId, mtime in written.items():  # not redone
            self.assertEqual(
                Path(segment._getExtraPath(f"{tsId}_labels.mrc")).stat().st_mtime_ns, mtime, tsId
            )
        self.assertEqual(self._engine_starts(segment, "segment"), len(TSIDS))
