"""A Scipion project for tests of protocol forms: what ``validate`` says before anything runs."""

import mrcfile
import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms

VOXEL_SIZE_A = 10.0


class FormCase(BaseTest):
    """Two imported tomogram sets, ``tomos_a`` (tomogram ua) and ``tomos_b`` (ub), empty volumes of
    8 x 16 x 16 voxels at ``VOXEL_SIZE_A`` A/voxel, and two picks in ua, ``coords_a``.

    A subclass names the protocol whose form it checks in ``protocol_class``.
    """

    protocol_class: type

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        for name in ("ua", "ub"):
            with mrcfile.new(cls.getOutputPath(f"{name}.mrc")) as mrc:
                mrc.set_data(np.zeros((8, 16, 16), np.float32))
                mrc.voxel_size = VOXEL_SIZE_A
        cls.tomos_a, cls.tomos_b = (
            cls.launchProtocol(
                cls.newProtocol(
                    ProtImportTomograms,
                    filesPath=cls.getOutputPath(),
                    filesPattern=f"{name}.mrc",
                    samplingRate=VOXEL_SIZE_A,
                )
            ).Tomograms
            for name in ("ua", "ub")
        )
        np.savetxt(cls.getOutputPath("ua.txt"), [[3, 4, 5], [10, 12, 4]])
        cls.coords_a = cls.launchProtocol(
            cls.newProtocol(
                ProtImportCoordinates3D,
                filesPath=cls.getOutputPath(),
                filesPattern="ua.txt",
                importTomograms=cls.tomos_a,
                boxSize=10,
            )
        ).outputCoordinates

    def _errors(self, **form) -> str:
        """What ``validate`` says of a new ``protocol_class`` with the settings ``form``, one error a line."""
        return "\n".join(self.newProtocol(self.protocol_class, **form).validate())
