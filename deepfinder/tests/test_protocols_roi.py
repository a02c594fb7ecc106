"""Regions of interest in the segment and cluster protocols: one mask per tomogram, by tsId."""

import numpy as np
import pytest
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.protocols import ProtImportTomomasks

from deepfinder.core.io import read_volume, write_volume
from deepfinder.core.model import build_unet, save_model
from deepfinder.core.tables import csv as particle_csv
from deepfinder.protocols import DeepFinderProtCluster, DeepFinderProtImportModel, DeepFinderProtSegment
from deepfinder.tests.projects import import_tomograms

SHAPE = (16, 32, 32)
SAMPLING = 10.0


def _errors(protocol) -> str:
    return "\n".join(protocol.validate())


class TestRegionsOfInterest(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        rng = np.random.default_rng(1)
        half = np.zeros(SHAPE, dtype=np.int8)
        half[..., : SHAPE[2] // 2] = 1  # x < 16
        blobs = np.zeros(SHAPE, dtype=np.int8)
        blobs[6:11, 6:11, 4:9] = 1  # centre x = 6: inside the mask
        blobs[6:11, 20:25, 22:27] = 1  # centre x = 24: outside
        for name in ("ta", "tb"):
            write_volume(cls.getOutputPath(f"{name}.mrc"), rng.normal(size=SHAPE), SAMPLING)
            write_volume(cls.getOutputPath(f"masks/{name}.mrc"), half, SAMPLING)
        write_volume(cls.getOutputPath("labels/ta.mrc"), blobs, SAMPLING)
        cls.tomos = {name: import_tomograms(cls, f"{name}.mrc", SAMPLING) for name in ("ta", "tb")}
        cls.masks = {name: cls._import_masks("masks", name) for name in ("ta", "tb")}
        cls.label_maps = cls._import_masks("labels", "ta")
        import keras

        keras.utils.set_random_seed(0)  # a network that labels voxels outside the mask (checked below)
        weights = save_model(
            build_unet(3),
            cls.getOutputPath("m.weights.h5"),
            {"class_names": ["background", "a", "b"], "voxel_size": SAMPLING},
        )
        cls.model = cls.launchProtocol(
            cls.newProtocol(DeepFinderProtImportModel, weightsFile=str(weights))
        ).model

    @classmethod
    def _import_masks(cls, folder, name):
        return cls.launchProtocol(
            cls.newProtocol(
                ProtImportTomomasks,
                filesPath=cls.getOutputPath(folder),
                filesPattern=f"{name}.mrc",
                inputTomos=cls.tomos[name],
            )
        ).tomomasks

    def test_segment_refuses_a_tomogram_without_a_mask_of_its_tsid(self):
        protocol = self.newProtocol(
            DeepFinderProtSegment,
            inputTomograms=self.tomos["tb"],
            inputModel=self.model,
            inputMasks=self.masks["ta"],
        )
        self.assertIn("Tomogram tb has no mask of that tsId among the regions of interest", _errors(protocol))
        matched = self.newProtocol(
            DeepFinderProtSegment,
            inputTomograms=self.tomos["tb"],
            inputModel=self.model,
            inputMasks=self.masks["tb"],
        )
        self.assertEqual(_errors(matched), "")

    def test_cluster_refuses_a_label_map_without_a_mask_of_its_tsid(self):
        protocol = self.newProtocol(
            DeepFinderProtCluster,
            inputTomograms=self.tomos["ta"],
            inputLabelMaps=self.label_maps,
            inputMasks=self.masks["tb"],
            radii="30",
        )
        self.assertIn(
            "Label map ta has no mask of that tsId among the regions of interest", _errors(protocol)
        )

    def test_segment_and_cluster_refuse_masks_without_a_sampling_rate(self):
        masks = self._import_masks("masks", "ta")
        masks.setSamplingRate(None)  # e.g. a set made by a script
        segment = self.newProtocol(
            DeepFinderProtSegment, inputTomograms=self.tomos["ta"], inputModel=self.model, inputMasks=masks
        )
        cluster = self.newProtocol(
            DeepFinderProtCluster,
            inputTomograms=self.tomos["ta"],
            inputLabelMaps=self.label_maps,
            inputMasks=masks,
            radii="30",
        )
        for protocol in (segment, cluster):
            self.assertIn(
                "The regions of interest have no sampling rate: set it when importing them.",
                _errors(protocol),
            )

    @pytest.mark.slow
    def test_segment_labels_background_outside_the_mask(self):
        protocol = self.launchProtocol(
            self.newProtocol(
                DeepFinderProtSegment,
                inputTomograms=self.tomos["ta"],
                inputModel=self.model,
                inputMasks=self.masks["ta"],
                patchSize=16,
            )
        )
        from deepfinder.core.model import load_model
        from deepfinder.core.segment import predict_scores

        labels = read_volume(protocol.labelMaps.getFirstItem().getFileName())
        outside = read_volume(self.masks["ta"].getFirstItem().getFileName()) == 0
        unmasked = predict_scores(
            read_volume(self.getOutputPath("ta.mrc")), load_model(self.model.getWeightsFile())[0]
        )
        self.assertTrue(unmasked.argmax(axis=-1)[outside].any(), "without the mask, labels outside")
        self.assertFalse(labels[outside].any())

    @pytest.mark.slow
    def test_cluster_keeps_the_particles_inside_the_mask(self):
        protocol = self.launchProtocol(
            self.newProtocol(
                DeepFinderProtCluster,
                inputTomograms=self.tomos["ta"],
                inputLabelMaps=self.label_maps,
                inputMasks=self.masks["ta"],
                radii="30",
                minSizes="0",
            )
        )
        self.assertEqual(protocol.coordinates.getSize(), 1)
        particles = particle_csv.read(protocol._getExtraPath("ta_particles.csv")).particles
        np.testing.assert_allclose(particles.xyz[:, 0], [6])
