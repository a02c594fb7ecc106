"""Our coordinates as input to other Scipion plugins' subtomogram extraction.

The coordinates are made by DeepFinderProtImportParticles, which fills the set
with ``convert.append_table`` exactly as the cluster protocol does (sampling
rate, box size, tomogram precedents, groupId, score, one orientation matrix per
coordinate), without the cost of training a network.

No extraction or averaging protocol of another plugin runs to the end without
its external program (Dynamo, EMAN2, RELION), so what is checked is everything
short of that:

- scipion-em-emantomo EmanProtTomoExtraction: its check of installation is
  empty, so it runs: its Python step writes EMAN's coordinate file, then
  e2spt_boxer_old.py is called (absent here, so the run fails there).
- scipion-em-dynamo DynamoExtraction: validating it on our set gives no error
  other than the missing Dynamo (tsIds of coordinates and tomograms match...).
- Dynamo: the positions and (tdrot, tilt, narot) angles its extraction step
  would write, computed by the plugin's own ``matrix2eulerAngles``.
- scipion-em-reliontomo: the particles STAR file that ProtRelion5ExtractSubtomos
  gives relion_tomo_subtomo, written by its ``Writer.coords2Star`` (the
  protocol also needs tilt series and CTFs, so the writer is called directly).
  reliontomo 4.0.5 imports ``scipion.install`` without declaring it: it needs
  scipion-app installed too, else Scipion silently drops its protocols.

Each test is skipped when its plugin is not installed.
"""

import glob
import os
import unittest

import numpy as np
import pwem
from emtable import Table
from pyworkflow.tests import BaseTest, setupTestProject
from scipy.spatial.transform import Rotation

from deepfinder.core.particles import ParticleTable
from deepfinder.core.tables import csv as particle_csv
from deepfinder.protocols import DeepFinderProtImportParticles
from deepfinder.tests.projects import import_tomograms, write_tomograms

VOXEL_SIZE = 8.0


def _other_protocol(name: str, requirement: str):
    """A protocol class discovered by Scipion, or skip the test naming what to install."""
    protocol = pwem.Domain.getProtocols().get(name)
    if protocol is None:
        raise unittest.SkipTest(f"{name} not available: pip install {requirement}")
    return protocol


def _by_position(xyz: np.ndarray) -> np.ndarray:
    return np.lexsort(np.asarray(xyz).T)


class TestOtherPluginsExtraction(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        write_tomograms(cls, {"ta": np.zeros((32, 64, 64)), "tb": np.zeros((31, 65, 63))}, VOXEL_SIZE)
        tomograms = import_tomograms(cls, "t?.mrc", VOXEL_SIZE)
        cls.particles = ParticleTable(
            tomo=["ta", "ta", "ta", "tb", "tb"],
            class_id=[1, 1, 2, 1, 2],
            xyz=[
                [10.25, 20.5, 5.75],
                [40.0, 41.5, 20.0],
                [52.5, 8.0, 12.25],
                [60.5, 3.25, 29.0],
                [30.0, 33.0, 15.5],
            ],
            rotation=Rotation.random(5, random_state=7).as_matrix(),
            score=[0.5, 0.25, 0.75, 0.9, 0.6],
        )
        source = particle_csv.write(cls.getOutputPath("picks.csv"), cls.particles)
        cls.coordinates = cls.launchProtocol(
            cls.newProtocol(
                DeepFinderProtImportParticles, filesPath=str(source), inputTomograms=tomograms, boxSize=12
            )
        ).coordinates

    def _expected(self, tomo: str) -> ParticleTable:
        mine = self.particles.select(self.particles.tomo == tomo)
        return mine.select(_by_position(mine.xyz))

    def _assert_only_the_program_is_missing(self, protocol):
        """The protocol's checks accept our set: any error left is about installing its program."""
        self.assertEqual(protocol.validate(), protocol.validateInstallation())

    def test_eman_extraction_writes_our_positions(self):
        extraction = _other_protocol("EmanProtTomoExtraction", "scipion-em-emantomo")
        protocol = self.newProtocol(extraction, inputCoordinates=self.coordinates, boxSize=12)
        self.assertEqual(protocol.validate(), [])
        # Without EMAN2 the run stops at e2spt_boxer_old.py, after the first
        # tomogram's coordinate file is written (moved to extra/<tsId>/ when it succeeds).
        self.proj.launchProtocol(protocol, wait=True)
        written = glob.glob(protocol._getExtraPath("*.coords"))
        written += glob.glob(protocol._getExtraPath("*", "*.coords"))
        self.assertTrue(written, protocol.getErrorMessage())
        for path in written:
            xyz = np.loadtxt(path, ndmin=2)
            expected = self._expected(os.path.basename(path)[: -len(".coords")])
            np.testing.assert_allclose(xyz[_by_position(xyz)], expected.xyz, atol=1e-3, err_msg=path)

    def test_dynamo_extraction_accepts_positions_and_orientations(self):
        extraction = _other_protocol("DynamoExtraction", "scipion-em-dynamo")
        from dynamo.convert import matrix2eulerAngles
        from tomo.constants import BOTTOM_LEFT_CORNER

        self._assert_only_the_program_is_missing(
            self.newProtocol(extraction, inputCoords=self.coordinates, boxSize=12)
        )
        # What DynamoExtraction.writeSetOfCoordinates3D writes for Dynamo, per tomogram.
        for tomo in self.coordinates.getPrecedents():
            xyz, angles = [], []
            for coord in self.coordinates.iterCoordinates(volume=tomo):
                xyz.append(coord.getPosition(BOTTOM_LEFT_CORNER))
                angles.append(matrix2eulerAngles(coord.getMatrix())[:3])
            xyz, angles = np.array(xyz), np.array(angles)
            expected = self._expected(tomo.getTsId())
            order = _by_position(xyz)
            np.testing.assert_allclose(xyz[order], expected.xyz, atol=1e-4)
            # Dynamo's (tdrot, tilt, narot) as the Dynamo plugin reads Scipion's
            # matrix M (particle(r) = reference(M r)): M = Rz(narot) Rx(tilt) Rz(tdrot).
            matrices = Rotation.from_euler("zxz", angles[order], degrees=True).as_matrix()
            np.testing.assert_allclose(matrices, expected.rotation.transpose(0, 2, 1), atol=1e-6)

    def test_relion5_extraction_star_has_positions_and_orientations(self):
        _other_protocol("ProtRelion5ExtractSubtomos", "scipion-em-reliontomo scipion-app")
        from reliontomo.constants import IN_PARTICLES_STAR, SCIPION_COORD_GROUP_ID
        from reliontomo.convert.convert50_tomo import PARTICLES_TABLE, Writer

        tomograms = {tomo.getTsId(): tomo.clone() for tomo in self.coordinates.getPrecedents()}
        folder = self.getOutputPath("relion5")
        os.makedirs(folder, exist_ok=True)
        Writer.coords2Star(self.coordinates, tomograms, folder, coordsScale=1.0)
        table = Table(fileName=os.path.join(folder, IN_PARTICLES_STAR), tableName=PARTICLES_TABLE)
        self.assertEqual(len(table), len(self.particles))
        for tomo in ("ta", "tb"):
            mine = [row for row in table if row.rlnTomoName == tomo]
            xyz = np.array([[row.rlnCoordinateX, row.rlnCoordinateY, row.rlnCoordinateZ] for row in mine])
            angles = np.array(
                [
                    [row.rlnTomoSubtomogramRot, row.rlnTomoSubtomogramTilt, row.rlnTomoSubtomogramPsi]
                    for row in mine
                ]
            )
            expected = self._expected(tomo)
            order = _by_position(xyz)
            np.testing.assert_allclose(xyz[order], expected.xyz, atol=1e-4, err_msg=tomo)
            # RELION's (rot, tilt, psi) as Scipion's reliontomo converts M for
            # rotation only: M = Rz(rot) Ry(tilt) Rz(psi), intrinsic.
            matrices = Rotation.from_euler("ZYZ", angles[order], degrees=True).as_matrix()
            np.testing.assert_allclose(
                matrices, expected.rotation.transpose(0, 2, 1), atol=1e-4, err_msg=tomo
            )
            groups = sorted(int(row.get(SCIPION_COORD_GROUP_ID)) for row in mine)
            self.assertEqual(groups, sorted(expected.class_id), tomo)
