"""Working with other pickers and with the upstream DeepFinder inside Scipion."""
import os

import mrcfile
import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms

from deepfinder.convert import LABEL_ATTR
from deepfinder.protocols import DeepFinderProtConsensus, DeepFinderProtImportModel
from deepfinder.tests.upstream_weights import write_upstream_weights


class TestInteroperability(BaseTest):

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        with mrcfile.new(cls.getOutputPath("ta.mrc")) as mrc:
            mrc.set_data(np.zeros((32, 64, 64), np.float32))
            mrc.voxel_size = 8.0
        cls.tomograms = cls.launchProtocol(cls.newProtocol(
            ProtImportTomograms, filesPath=cls.getOutputPath(), filesPattern="ta.mrc",
            samplingRate=8.0)).Tomograms

    def _coordinates(self, folder, xyz):
        path = self.getOutputPath(folder)
        os.makedirs(path, exist_ok=True)
        np.savetxt(f"{path}/ta.txt", xyz)
        return self.launchProtocol(self.newProtocol(
            ProtImportCoordinates3D, filesPath=path, filesPattern="ta.txt",
            importTomograms=self.tomograms, boxSize=8)).outputCoordinates

    def test_consensus_of_template_matching_and_deepfinder(self):
        template_matching = self._coordinates("tm", [[10, 10, 10], [40, 40, 20], [50, 12, 8]])
        deepfinder = self._coordinates("df", [[11, 10, 10], [40, 41, 20], [20, 50, 16], [5, 60, 4]])
        protocol = self.launchProtocol(self.newProtocol(
            DeepFinderProtConsensus, inputCoordinates=[template_matching, deepfinder]))
        self.assertEqual(protocol.union.getSize(), 5)
        self.assertEqual(protocol.intersection.getSize(), 2)
        self.assertEqual(protocol.only1.getSize(), 1)
        self.assertEqual(protocol.only2.getSize(), 2)
        sources = sorted(getattr(c, LABEL_ATTR).get() for c in protocol.union)
        self.assertEqual(sources, ["1", "1,2", "1,2", "2", "2"])
        self.assertEqual(protocol.union.getBoxSize(), 8)
        self.assertEqual(protocol.union.getPrecedents().getFirstItem().getTsId(), "ta")

    def test_upstream_weights_become_a_model(self):
        weights = self.getOutputPath("net_weights_FINAL.h5")
        write_upstream_weights(weights, n_classes=3)
        protocol = self.launchProtocol(self.newProtocol(
            DeepFinderProtImportModel, weightsFile=weights, classNames="ribosome, proteasome",
            patchSize=56, samplingRate=13.68))
        model = protocol.model
        self.assertEqual(model.getClassNames(), ["background", "ribosome", "proteasome"])
        self.assertEqual(model.getPatchSize(), 56)
        self.assertAlmostEqual(model.getSamplingRate(), 13.68)

    def test_upstream_weights_of_another_class_count_fail_clearly(self):
        weights = self.getOutputPath("other_FINAL.h5")
        write_upstream_weights(weights, n_classes=5)
        protocol = self.newProtocol(DeepFinderProtImportModel, weightsFile=weights,
                                    classNames="ribosome, proteasome", samplingRate=10.0)
        self.proj.launchProtocol(protocol, wait=True)
        self.assertTrue(protocol.isFailed())
        self.assertIn("DeepFinder U-net with 3 classes", protocol.getErrorMessage())
