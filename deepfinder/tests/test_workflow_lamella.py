"""The lamella demo's comparison in a real Scipion project: label maps of the held-out tomogram
clustered four ways (with or without an automatic score threshold, with or without the slab mask)."""

import numpy as np
import pytest
from pyworkflow.tests import BaseTest, setupTestProject
from scipy import ndimage
from tomo.protocols import ProtImportTomomasks

from deepfinder.core.io import read_volume, write_volume
from deepfinder.core.model import build_unet, save_model
from deepfinder.protocols import DeepFinderProtImportModel
from deepfinder.tests import LAMELLA
from deepfinder.workflow import CLUSTER_WAYS, MASKED_SEGMENTATION, four_ways_report, import_tomograms, launch

pytestmark = pytest.mark.slow

HELD_OUT = "tomo_002"


def picker_fooled_by_the_layer(folder) -> np.ndarray:
    """A label map that finds every true particle, and ribosomes wherever the tomogram is darkest
    (1 %, smoothed): the gold beads and look-alikes above the slab, as a real picker would."""
    truth = read_volume(f"{folder}/{HELD_OUT}_labels.mrc").astype(np.int8)
    smoothed = ndimage.gaussian_filter(read_volume(f"{folder}/{HELD_OUT}.mrc"), 2.0)
    dark = smoothed < np.quantile(smoothed, 0.01)
    return np.where(truth > 0, truth, dark.astype(np.int8))


class TestFourWays(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        tomograms = import_tomograms(cls.proj, LAMELLA, f"{HELD_OUT}.mrc", "held-out tomogram").Tomograms
        write_volume(
            cls.getOutputPath(f"labels/{HELD_OUT}.mrc"),
            picker_fooled_by_the_layer(LAMELLA.getPath()),
            LAMELLA.voxel_size(),
        )
        label_maps = launch(
            cls.proj,
            ProtImportTomomasks,
            "label maps",
            filesPath=cls.getOutputPath("labels"),
            filesPattern="{TS}.mrc",
            inputTomos=tomograms,
        ).tomomasks
        cls.report = four_ways_report(cls.proj, LAMELLA, tomograms, label_maps, model=cls._untrained_model())
        cls.sections = dict(section.split(":\n", 1) for section in cls.report.split("\n\n")[:-1])
        # The last lines: way, F1 of ribosome, ring, rod and all, picks outside the slab.
        cls.summary = {line.rsplit(None, 5)[0]: line.split()[-5:] for line in cls.report.splitlines()[-5:]}

    @classmethod
    def _untrained_model(cls):
        """A model of the lamella's classes that labels voxels all over the tomogram."""
        import keras

        keras.utils.set_random_seed(0)
        names = ["background"] + [c["name"] for c in LAMELLA.classes()]
        weights = save_model(
            build_unet(len(names)),
            cls.getOutputPath("untrained.weights.h5"),
            {"class_names": names, "voxel_size": LAMELLA.voxel_size()},
        )
        return launch(cls.proj, DeepFinderProtImportModel, "model", weightsFile=str(weights)).model

    def test_the_report_has_a_table_and_the_picks_outside_the_slab_for_each_way(self):
        self.assertEqual(list(self.sections), [*CLUSTER_WAYS, MASKED_SEGMENTATION])
        for table in self.sections.values():
            self.assertTrue(table.startswith("class "))
            self.assertIn("\nribosome ", table)
            self.assertIn("picks outside the slab: ", table)
        self.assertEqual(list(self.summary), [*CLUSTER_WAYS, MASKED_SEGMENTATION])

    def test_the_mask_removes_the_picks_outside_the_slab(self):
        outside = {way: int(figures[-1]) for way, figures in self.summary.items()}
        self.assertGreater(outside["no threshold, no mask"], 0)
        self.assertEqual(outside["mask"], 0)
        self.assertEqual(outside["mask + automatic threshold"], 0)
        self.assertEqual(outside[MASKED_SEGMENTATION], 0)
        picks_segmented_in_mask = int(self.sections[MASKED_SEGMENTATION].split("\nall ")[1].split()[0])
        self.assertGreater(picks_segmented_in_mask, 0, "an untrained model labels matter in the slab too")
        ribosome_f1 = {way: float(figures[0]) for way, figures in self.summary.items()}
        self.assertGreater(ribosome_f1["mask"], ribosome_f1["no threshold, no mask"])
