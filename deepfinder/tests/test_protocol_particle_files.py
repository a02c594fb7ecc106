"""The particle-list import protocol on tables RELION 4/5, Warp, WarpTools, Dynamo, STOPGAP, IMOD and
copick wrote, in a Scipion project."""

from pathlib import Path

import mrcfile
import numpy as np
import pytest
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.protocols import ProtImportTomograms

from deepfinder.convert import coordinates_to_table
from deepfinder.core import tables
from deepfinder.core.particles import ParticleTable
from deepfinder.protocols import DeepFinderProtImportParticles
from deepfinder.tests.realformats import REAL_FORMATS

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not REAL_FORMATS.is_dir(), reason=f"{REAL_FORMATS} absent (tables written by real tools)"
    ),
]

SAMPLING = 10.0  # Angstrom per voxel of the tomograms
BINNED_PIXEL = 7.407407 * 1.35  # the RELION 5 tutorial's binned tomograms
# Tomograms named as the tables name them (Warp 1: the file name without its pixel-size suffix;
# Dynamo's tomogram 2 and STOPGAP's 24, as Scipion names them; the copick run), or as the file of a
# table of one tomogram whose name matches none (IMOD's model).
NAMES = (
    "TS_01",
    "TS_017",
    "01006",
    "TS_17",
    "TS_24",
    "TS_001",
    "TS_2",
    "imod_cryocat_correct189",
)
COPICK_PROJECT = Path(__file__).parent / "data" / "copick" / "project"


class TestImportParticleFiles(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        for name in NAMES:
            with mrcfile.new(cls.getOutputPath(f"{name}.mrc")) as mrc:
                mrc.set_data(np.zeros((16, 16, 16), np.float32))
                mrc.voxel_size = SAMPLING
        cls.tomograms = cls.launchProtocol(
            cls.newProtocol(
                ProtImportTomograms,
                filesPath=cls.getOutputPath(),
                filesPattern="*.mrc",
                samplingRate=SAMPLING,
            )
        ).Tomograms

    def _import(self, name: str | Path, **options) -> ParticleTable:
        protocol = self.launchProtocol(
            self.newProtocol(
                DeepFinderProtImportParticles,
                filesPath=str(REAL_FORMATS / name) if isinstance(name, str) else str(name),
                inputTomograms=self.tomograms,
                boxSize=8,
                **options,
            )
        )
        coordinates = protocol.coordinates
        self.assertAlmostEqual(coordinates.getSamplingRate(), SAMPLING)
        return coordinates_to_table(coordinates, SAMPLING)

    def test_the_two_relion5_files_of_the_same_picks_import_to_the_same_coordinates(self):
        centred = self._import(
            "relion5_picktomo_job019_particles.star",
            tomogramsStar=str(REAL_FORMATS / "relion5_tutorial_denoise_tomograms.star"),
        )
        binned = self._import("relion5_picktomo_job019_TS_01_annotation.star", samplingRate=BINNED_PIXEL)
        self.assertEqual(len(centred), 1960)  # TS_01's picks; the other tomograms' are skipped
        self.assertEqual(len(binned), 1960)
        order_c, order_b = np.lexsort(centred.xyz.T), np.lexsort(binned.xyz.T)
        np.testing.assert_allclose(centred.xyz[order_c], binned.xyz[order_b], atol=0.01)
        # binned pixels of 9.99999945 A in voxels of 10 A
        expected = tables.read_table(
            REAL_FORMATS / "relion5_picktomo_job019_TS_01_annotation.star",
            coordinates_voxel_size=BINNED_PIXEL,
            voxel_size=SAMPLING,
        ).particles
        np.testing.assert_allclose(np.sort(binned.xyz[:, 0]), np.sort(expected.xyz[:, 0]), atol=0.01)

    def test_relion4_warp_and_warptools_files_import_with_their_pixel_sizes(self):
        for name, tomogram, pixel_size in (
            ("relion4_pseudosubtomo_data.star", "TS_017", 1.971),
            ("warp1_relion30_subtomo.star", "01006", 5.364),
            ("warptools2_particles_matching.star", "TS_17", 4.0),
        ):
            raw = tables.read_table(REAL_FORMATS / name)
            self.assertAlmostEqual(raw.voxel_size, pixel_size, msg=name)
            expected = raw.particles.of_tomogram(tomogram)
            imported = self._import(name)
            # Scipion names a tomogram whose name starts with a digit TS_<name>.
            ts_id = f"TS_{tomogram}" if tomogram[0].isdigit() else tomogram
            self.assertEqual(set(imported.tomo), {ts_id}, name)
            self.assertEqual(len(imported), len(expected), name)
            np.testing.assert_allclose(
                np.sort(imported.xyz[:, 2]), np.sort(expected.xyz[:, 2] * pixel_size / SAMPLING), atol=0.01
            )

    def test_dynamo_stopgap_imod_and_copick_tables_import_at_the_tomograms_sampling(self):
        # file or project, tsId, the table's name of that tomogram (None: all rows), form, options
        for path, ts_id, tomogram, form, options in (
            (REAL_FORMATS / "dynamo_b4_motl_CR_tm.tbl", "TS_2", "2", {"samplingRate": 8.0}, {}),
            (
                REAL_FORMATS / "stopgap_class6_er_mr1_1_sg_first200.star",
                "TS_24",
                "24",
                {"samplingRate": 8.0},
                {},
            ),
            (
                REAL_FORMATS / "imod_cryocat_correct189.mod",
                "imod_cryocat_correct189",
                None,
                {"samplingRate": 4.0, "subvolumeOffset": True},
                {"subvolume_offset": True},
            ),
            (COPICK_PROJECT, "TS_001", "TS_001", {"copickUserId": "picker"}, {"user_id": "picker"}),
        ):
            expected = tables.read_table(
                path, coordinates_voxel_size=form.get("samplingRate"), voxel_size=SAMPLING, **options
            ).particles
            if tomogram is not None:
                expected = expected.of_tomogram(tomogram)
            imported = self._import(path, **form)
            self.assertEqual(set(imported.tomo), {ts_id}, path.name)
            self.assertEqual(len(imported), len(expected), path.name)
            np.testing.assert_allclose(
                np.sort(imported.xyz[:, 0]), np.sort(expected.xyz[:, 0]), atol=0.01, err_msg=path.name
            )

    def test_a_format_option_the_files_do_not_take_is_refused_by_the_form(self):
        protocol = self.newProtocol(
            DeepFinderProtImportParticles,
            filesPath=str(REAL_FORMATS / "relion4_pseudosubtomo_data.star"),
            inputTomograms=self.tomograms,
            tableMap=str(REAL_FORMATS / "dynamo_tmap_complex.doc"),
        )
        self.assertEqual(
            protocol._validate(),
            ["'Dynamo/STOPGAP table map (optional)' does not apply to relion5 files: clear it."],
        )
