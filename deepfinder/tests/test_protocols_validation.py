"""Bad input is refused by the protocols' forms, with a message that says what to change."""

import numpy as np
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.objects import SetOfCoordinates3D, SetOfTomoMasks
from tomo.protocols import ProtImportCoordinates3D

from deepfinder.core.model import build_unet, save_model
from deepfinder.protocols import (
    DeepFinderProtCluster,
    DeepFinderProtGenerateTargets,
    DeepFinderProtImportModel,
    DeepFinderProtSegment,
    DeepFinderProtTrain,
)
from deepfinder.protocols.protocol_base import (
    coordinates_without_sampling_rate,
    volumes_without_sampling_rate,
)
from deepfinder.tests.projects import import_tomograms, write_tomograms


def _errors(protocol) -> str:
    return "\n".join(protocol.validate())


def test_sets_without_sampling_rate_are_refused_by_name():
    label_maps = SetOfTomoMasks()
    assert volumes_without_sampling_rate(label_maps, "label maps") == [
        "The label maps have no sampling rate: set it when importing them."
    ]
    label_maps.setSamplingRate(10.0)
    assert volumes_without_sampling_rate(label_maps, "label maps") == []
    with_rate, without_rate = SetOfCoordinates3D(), SetOfCoordinates3D()
    with_rate.setSamplingRate(10.0)
    without_rate.setObjLabel("manual picks")
    assert coordinates_without_sampling_rate([with_rate, without_rate]) == [
        "manual picks has no sampling rate: re-import it with one."
    ]


class TestFormValidation(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)
        rng = np.random.default_rng(1)
        write_tomograms(cls, {name: rng.normal(size=(16, 32, 32)) for name in ("ta", "tb")}, 10.0)
        np.savetxt(cls.getOutputPath("ta.txt"), [[5, 5, 5], [20, 20, 8]])
        np.savetxt(cls.getOutputPath("tb.txt"), [[9, 9, 9], [18, 12, 6]])
        cls.tomos_a = import_tomograms(cls, "ta.mrc", 10.0)
        cls.tomos_b = import_tomograms(cls, "tb.mrc", 10.0)
        cls.coords_a, cls.coords_b = (
            cls.launchProtocol(
                cls.newProtocol(
                    ProtImportCoordinates3D,
                    filesPath=cls.getOutputPath(),
                    filesPattern=f"{name}.txt",
                    importTomograms=tomograms,
                    boxSize=10,
                )
            ).outputCoordinates
            for name, tomograms in (("ta", cls.tomos_a), ("tb", cls.tomos_b))
        )
        weights = save_model(
            build_unet(3),
            cls.getOutputPath("m.weights.h5"),
            {"class_names": ["background", "a", "b"], "voxel_size": 10.0},
        )
        cls.model = cls.launchProtocol(
            cls.newProtocol(DeepFinderProtImportModel, weightsFile=str(weights))
        ).model

    def test_targets_refuses_coordinates_of_other_tomograms(self):
        protocol = self.newProtocol(
            DeepFinderProtGenerateTargets,
            inputTomograms=self.tomos_b,
            inputCoordinates=[self.coords_a],
            radii="50",
        )
        self.assertIn("not in the input tomograms", _errors(protocol))

    def test_targets_refuses_bad_radii(self):
        for radii in ("", "-3", "50, 60"):
            protocol = self.newProtocol(
                DeepFinderProtGenerateTargets,
                inputTomograms=self.tomos_a,
                inputCoordinates=[self.coords_a],
                radii=radii,
            )
            self.assertIn("positive sphere radius", _errors(protocol), radii)
        good = self.newProtocol(
            DeepFinderProtGenerateTargets,
            inputTomograms=self.tomos_a,
            inputCoordinates=[self.coords_a],
            radii="50",
        )
        self.assertEqual(_errors(good), "")

    def test_targets_refuses_wrong_number_of_class_names(self):
        protocol = self.newProtocol(
            DeepFinderProtGenerateTargets,
            inputTomograms=self.tomos_a,
            inputCoordinates=[self.coords_a],
            radii="50",
            classNames="a, b",
        )
        self.assertIn("2 class names given for 1 classes", _errors(protocol))

    def test_segment_refuses_tiles_not_multiple_of_4(self):
        protocol = self.newProtocol(
            DeepFinderProtSegment, inputTomograms=self.tomos_a, inputModel=self.model, patchSize=50
        )
        self.assertIn("not a multiple of 4: use 48 or 52", _errors(protocol))

    def test_segment_refuses_spectrum_matching_with_a_model_that_lacks_the_training_spectrum(self):
        protocol = self.newProtocol(
            DeepFinderProtSegment, inputTomograms=self.tomos_a, inputModel=self.model, matchSpectrum=True
        )
        self.assertIn("segment without spectrum matching, or train it again", _errors(protocol))
        protocol.matchSpectrum.set(False)
        self.assertEqual(_errors(protocol), "")

    def test_segment_refuses_a_coarse_model_not_at_twice_the_sampling(self):
        protocol = self.newProtocol(
            DeepFinderProtSegment, inputTomograms=self.tomos_a, inputModel=self.model, coarseModel=self.model
        )
        self.assertIn(
            "must be trained at twice its voxel size (20 A/voxel: train it with binning 2", _errors(protocol)
        )
        weights = save_model(
            build_unet(3),
            self.getOutputPath("coarse.weights.h5"),
            {"class_names": ["background", "a", "b"], "voxel_size": 20.0},
        )
        coarse = self.launchProtocol(
            self.newProtocol(DeepFinderProtImportModel, weightsFile=str(weights))
        ).model
        protocol.coarseModel.set(coarse)
        self.assertEqual(_errors(protocol), "")
        # The coarse model alone segments, but the form says what it is for.
        protocol = self.newProtocol(DeepFinderProtSegment, inputTomograms=self.tomos_a, inputModel=coarse)
        self.assertIn("(train form: Binning 2) is the Coarse model", "\n".join(protocol.warnings()))

    def test_import_model_refuses_missing_file(self):
        protocol = self.newProtocol(DeepFinderProtImportModel, weightsFile="/nonexistent.h5")
        self.assertIn("Weights file not found", _errors(protocol))

    def test_cluster_refuses_missing_radius(self):
        targets = self.launchProtocol(
            self.newProtocol(
                DeepFinderProtGenerateTargets,
                inputTomograms=self.tomos_a,
                inputCoordinates=[self.coords_a],
                radii="40",
            )
        )
        protocol = self.newProtocol(
            DeepFinderProtCluster, inputTomograms=self.tomos_a, inputLabelMaps=targets.labelMaps, radii=""
        )
        self.assertIn("positive radius", _errors(protocol))
        wrong_tomograms = self.newProtocol(
            DeepFinderProtCluster, inputTomograms=self.tomos_b, inputLabelMaps=targets.labelMaps, radii="40"
        )
        self.assertIn("has no tomogram of that tsId", _errors(wrong_tomograms))

    def test_train_refuses_patch_and_model_mismatch(self):
        targets = self.launchProtocol(
            self.newProtocol(
                DeepFinderProtGenerateTargets,
                inputTomograms=self.tomos_a,
                inputCoordinates=[self.coords_a],
                radii="40",
            )
        )
        protocol = self.newProtocol(
            DeepFinderProtTrain,
            inputLabelMaps=targets.labelMaps,
            inputCoordinates=[self.coords_a],
            patchSize=30,
            initialModel=self.model,
        )
        errors = _errors(protocol)
        self.assertIn("Patch size 30 is not a multiple of 4", errors)
        self.assertIn("The starting model has 3 classes", errors)

    def test_train_refuses_not_particles_of_other_tomograms(self):
        targets = self.launchProtocol(
            self.newProtocol(
                DeepFinderProtGenerateTargets,
                inputTomograms=self.tomos_a,
                inputCoordinates=[self.coords_a],
                radii="40",
            )
        )

        def errors(background):
            return _errors(
                self.newProtocol(
                    DeepFinderProtTrain,
                    inputLabelMaps=targets.labelMaps,
                    inputCoordinates=[self.coords_a],
                    backgroundCoordinates=background,
                )
            )

        self.assertIn("has no point in the tomograms of the label maps (ta)", errors([self.coords_b]))
        self.assertEqual(errors([self.coords_a]), "")

    def test_train_warns_when_a_batch_cannot_hold_every_class(self):
        protocol = self.newProtocol(
            DeepFinderProtTrain, inputCoordinates=[self.coords_a, self.coords_a], batchSize=1
        )
        self.assertIn(
            "The batch size (1) is smaller than the 2 particle classes", "\n".join(protocol.warnings())
        )
        protocol.batchSize.set(2)
        self.assertEqual(protocol.warnings(), [])

    def test_train_warns_when_the_shift_can_move_the_particle_out_of_the_patch(self):
        protocol = self.newProtocol(
            DeepFinderProtTrain, inputCoordinates=[self.coords_a], patchSize=16, shiftVoxels=13
        )
        self.assertIn("use a shift below 8", "\n".join(protocol.warnings()))
        protocol.shiftVoxels.set(4)
        self.assertEqual(protocol.warnings(), [])
