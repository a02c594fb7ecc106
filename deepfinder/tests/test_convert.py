"""Particles cross the Scipion boundary without losing position, class, score or orientation;
label maps keep what they record."""

import mrcfile
import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.objects import SetOfCoordinates3D, SetOfTomoMasks, TomoMask
from tomo.protocols import ProtImportTomograms

from deepfinder.convert import (
    append_table,
    coordinates_to_table,
    get_score_files,
    set_score_files,
    tomograms_by_tsid,
)
from deepfinder.core.particles import ParticleTable, rotations_from_euler_zxz


class TestCoordinatesRoundTrip(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        for name in ("ta", "tb"):
            with mrcfile.new(cls.getOutputPath(f"{name}.mrc")) as mrc:
                mrc.set_data(np.zeros((20, 50, 40), np.float32))
                mrc.voxel_size = 10.0
        cls.importer = cls.newProtocol(
            ProtImportTomograms, filesPath=cls.getOutputPath(), filesPattern="t*.mrc", samplingRate=10.0
        )
        cls.launchProtocol(cls.importer)

    def test_table_to_set_and_back(self):
        tomograms = tomograms_by_tsid(self.importer.Tomograms)
        table = ParticleTable(
            tomo=["ta", "tb", "tb"],
            class_id=[1, 2, 1],
            xyz=[[3.25, 4.5, 7.75], [39.0, 49.0, 19.0], [0.0, 0.0, 0.0]],
            rotation=rotations_from_euler_zxz([10, 200, 0], [30, 90, 0], [5, 60, 0]),
            score=[0.9, 0.5, 0.25],
        )
        coordinates = SetOfCoordinates3D.create(self.getOutputPath(), prefix="coords")
        coordinates.setPrecedents(self.importer.Tomograms)
        coordinates.setSamplingRate(10.0)
        append_table(coordinates, table, tomograms)
        coordinates.write()

        back = coordinates_to_table(coordinates, sampling_rate=10.0)
        self.assertEqual(list(back.tomo), ["ta", "tb", "tb"])
        self.assertEqual(list(back.class_id), [1, 2, 1])
        np.testing.assert_allclose(back.xyz, table.xyz, atol=1e-6)
        np.testing.assert_allclose(back.rotation, table.rotation, atol=1e-6)
        np.testing.assert_allclose(back.score, table.score)

        # Coordinates at 10 A/px read for tomograms binned 2x (20 A/px) halve.
        binned = coordinates_to_table(coordinates, sampling_rate=20.0, class_id=3)
        np.testing.assert_allclose(binned.xyz, table.xyz / 2, atol=1e-6)
        self.assertTrue(np.all(binned.class_id == 3))

    def test_label_maps_keep_their_score_files_in_the_set_file(self):
        masks = SetOfTomoMasks.create(self.getOutputPath(), prefix="masks")
        for tsId, scores in (("ta", {1: "/s/ta_1.mrc", 2: "/s/ta_2.mrc"}), ("tb", {})):
            mask = TomoMask()
            mask.setTsId(tsId)
            set_score_files(mask, scores)
            masks.append(mask)
        masks.write()
        reread = SetOfTomoMasks(filename=masks.getFileName())
        files = {mask.getTsId(): get_score_files(mask) for mask in reread.iterItems()}
        self.assertEqual(files, {"ta": {"1": "/s/ta_1.mrc", "2": "/s/ta_2.mrc"}, "tb": {}})
        self.assertEqual(get_score_files(TomoMask()), {})  # another plugin's label map
