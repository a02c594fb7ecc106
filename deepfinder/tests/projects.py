"""Scipion test projects: tomograms written and imported, and the project of the form tests."""

import mrcfile
import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.objects import SetOfTomograms
from tomo.protocols import ProtImportCoordinates3D, ProtImportTomograms

VOXEL_SIZE_A = 10.0


def write_tomograms(test: type[BaseTest], volumes: dict[str, np.ndarray], voxel_size_A: float) -> None:
    """Write each of ``volumes`` as ``<name>.mrc`` (float32, ``voxel_size_A`` A/voxel) in the output
    folder of the test class ``test``."""
    for name, volume in volumes.items():
        with mrcfile.new(test.getOutputPath(f"{name}.mrc")) as mrc:
            mrc.set_data(np.asarray(volume, np.float32))
            mrc.voxel_size = voxel_size_A


def import_tomograms(test: type[BaseTest], pattern: str, voxel_size_A: float) -> SetOfTomograms:
    """The tomograms of the files matching ``pattern`` in the output folder of the test class
    ``test``, imported by tomo's import protocol at ``voxel_size_A`` A/voxel."""
    return test.launchProtocol(
        test.newProtocol(
            ProtImportTomograms,
            filesPath=test.getOutputPath(),
            filesPattern=pattern,
            samplingRate=voxel_size_A,
        )
    ).Tomograms


class FormCase(BaseTest):
    """Two imported tomogram sets, ``tomos_a`` (tomogram ua) and ``tomos_b`` (ub), empty volumes of
    8 x 16 x 16 voxels at ``VOXEL_SIZE_A`` A/voxel, and two picks in ua, ``coords_a``.

    A subclass names the protocol whose form it checks in ``protocol_class``.
    """

    protocol_class: type

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        write_tomograms(cls, {name: np.zeros((8, 16, 16)) for name in ("ua", "ub")}, VOXEL_SIZE_A)
        cls.tomos_a, cls.tomos_b = (
            import_tomograms(cls, f"{name}.mrc", VOXEL_SIZE_A) for name in ("ua", "ub")
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
