"""Working with other pickers and with the upstream DeepFinder inside Scipion."""

import os

import numpy as np
import pytest
from pyworkflow.tests import BaseTest, setupTestProject
from scipy.spatial.transform import Rotation
from tomo.protocols import ProtImportCoordinates3D

from deepfinder.convert import LABEL_ATTR, coordinates_to_table
from deepfinder.core import tables
from deepfinder.core.particles import ParticleTable
from deepfinder.core.tables import csv as particle_csv
from deepfinder.protocols import (
    DeepFinderProtConsensus,
    DeepFinderProtExportParticles,
    DeepFinderProtImportModel,
    DeepFinderProtImportParticles,
)
from deepfinder.protocols.protocol_particle_files import EXPORT_FORMATS
from deepfinder.tests.projects import import_tomograms, write_tomograms
from deepfinder.tests.upstream_weights import write_upstream_weights

pytestmark = pytest.mark.slow


class TestInteroperability(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        write_tomograms(cls, {"ta": np.zeros((32, 64, 64)), "tb": np.zeros((31, 65, 63))}, 8.0)
        cls.tomograms = import_tomograms(cls, "t?.mrc", 8.0)

    def _coordinates(self, folder, xyz):
        path = self.getOutputPath(folder)
        os.makedirs(path, exist_ok=True)
        np.savetxt(f"{path}/ta.txt", xyz)
        return self.launchProtocol(
            self.newProtocol(
                ProtImportCoordinates3D,
                filesPath=path,
                filesPattern="ta.txt",
                importTomograms=self.tomograms,
                boxSize=8,
            )
        ).outputCoordinates

    def test_consensus_of_template_matching_and_deepfinder(self):
        template_matching = self._coordinates("tm", [[10, 10, 10], [40, 40, 20], [50, 12, 8]])
        deepfinder = self._coordinates("df", [[11, 10, 10], [40, 41, 20], [20, 50, 16], [5, 60, 4]])
        protocol = self.launchProtocol(
            self.newProtocol(DeepFinderProtConsensus, inputCoordinates=[template_matching, deepfinder])
        )
        self.assertEqual(protocol.union.getSize(), 5)
        self.assertEqual(protocol.intersection.getSize(), 2)
        self.assertEqual(protocol.only1.getSize(), 1)
        self.assertEqual(protocol.only2.getSize(), 2)
        sources = sorted(getattr(c, LABEL_ATTR).get() for c in protocol.union)
        self.assertEqual(sources, ["1", "1,2", "1,2", "2", "2"])
        self.assertEqual(protocol.union.getBoxSize(), 8)
        self.assertIn("ta", [t.getTsId() for t in protocol.union.getPrecedents()])

    def test_classes_picked_at_two_samplings_join_in_one_set(self):
        # Large particles picked in 2x-binned copies of the tomograms, small ones at full size.
        os.makedirs(self.getOutputPath("binned"), exist_ok=True)
        write_tomograms(self, {"binned/ta": np.zeros((16, 32, 32))}, 16.0)
        binned_tomograms = import_tomograms(self, "binned/ta.mrc", 16.0)
        picks = {
            "full": ParticleTable(tomo=["ta", "ta"], class_id=[2, 2], xyz=[[10, 12, 8], [50, 40, 20]]),
            "binned": ParticleTable(tomo=["ta"], class_id=[1], xyz=[[20, 6, 10]]),
        }
        imported = {}
        for name, tomograms in (("full", self.tomograms), ("binned", binned_tomograms)):
            source = particle_csv.write(self.getOutputPath(f"{name}.csv"), picks[name])
            imported[name] = self.launchProtocol(
                self.newProtocol(
                    DeepFinderProtImportParticles,
                    filesPath=str(source),
                    inputTomograms=tomograms,
                    boxSize=8,
                )
            )
        joined = self.launchProtocol(
            self.newProtocol(
                DeepFinderProtConsensus,
                inputCoordinates=[imported["full"].coordinates_class2, imported["binned"].coordinates_class1],
                useGroupId=True,
            )
        ).union
        self.assertEqual(joined.getSamplingRate(), 8.0)
        table = coordinates_to_table(joined, 8.0)
        self.assertEqual(sorted(table.class_id), [1, 2, 2])
        np.testing.assert_allclose(table.of_class(1).xyz, [[40, 12, 20]], atol=1)
        np.testing.assert_allclose(sorted(table.of_class(2).xyz.tolist()), picks["full"].xyz, atol=1e-6)

    def test_upstream_weights_become_a_model(self):
        weights = self.getOutputPath("net_weights_FINAL.h5")
        write_upstream_weights(weights, n_classes=3)
        protocol = self.launchProtocol(
            self.newProtocol(
                DeepFinderProtImportModel,
                weightsFile=weights,
                classNames="ribosome, proteasome",
                patchSize=56,
                samplingRate=13.68,
            )
        )
        model = protocol.model
        self.assertEqual(model.getClassNames(), ["background", "ribosome", "proteasome"])
        self.assertEqual(model.getPatchSize(), 56)
        self.assertAlmostEqual(model.getSamplingRate(), 13.68)

    def test_upstream_weights_of_another_class_count_fail_clearly(self):
        weights = self.getOutputPath("other_FINAL.h5")
        write_upstream_weights(weights, n_classes=5)
        protocol = self.newProtocol(
            DeepFinderProtImportModel,
            weightsFile=weights,
            classNames="ribosome, proteasome",
            samplingRate=10.0,
        )
        self.proj.launchProtocol(protocol, wait=True)
        self.assertTrue(protocol.isFailed())
        self.assertIn("DeepFinder U-net with 3 classes", protocol.getErrorMessage())

    def test_particle_lists_round_trip_through_every_format(self):
        particles = ParticleTable(
            tomo=["ta", "ta", "tb"],
            class_id=[1, 2, 2],
            xyz=[[10.25, 20.5, 5.75], [40, 41.5, 20], [60.5, 3.25, 29]],
            rotation=Rotation.random(3, random_state=2).as_matrix(),
            score=[0.5, 0.25, 0.75],
        )
        source = particle_csv.write(self.getOutputPath("picks.csv"), particles)
        imported = self.launchProtocol(
            self.newProtocol(
                DeepFinderProtImportParticles,
                filesPath=str(source),
                inputTomograms=self.tomograms,
                boxSize=12,
            )
        )
        self.assertEqual(imported.coordinates_class2.getSize(), 2)
        for file_format in EXPORT_FORMATS:
            exported = self.launchProtocol(
                self.newProtocol(
                    DeepFinderProtExportParticles,
                    inputCoordinates=[imported.coordinates],
                    fileFormat=EXPORT_FORMATS.index(file_format),
                )
            )
            back = self.launchProtocol(
                self.newProtocol(
                    DeepFinderProtImportParticles,
                    filesPath=exported._getExtraPath(
                        f"particles*{tables.FORMATS[file_format].extensions[0]}"
                    ),
                    inputTomograms=self.tomograms,
                    boxSize=12,
                    # STOPGAP lists state no pixel size: the tomograms' is given.
                    samplingRate=8.0 if file_format == "stopgap" else 0.0,
                )
            )
            table = coordinates_to_table(back.coordinates, 8.0)
            order = np.lexsort(table.xyz.T)
            expected = particles.select(np.lexsort(particles.xyz.T))
            label = file_format
            self.assertEqual(list(table.tomo[order]), list(expected.tomo), label)
            self.assertEqual(list(table.class_id[order]), list(expected.class_id), label)
            np.testing.assert_allclose(table.xyz[order], expected.xyz, atol=1e-3, err_msg=label)
            if file_format == "imod":
                continue  # IMOD points carry no orientation
            np.testing.assert_allclose(table.rotation[order], expected.rotation, atol=1e-4, err_msg=label)
