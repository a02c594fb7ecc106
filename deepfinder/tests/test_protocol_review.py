"""The review protocol driven as a user would: real key presses on its window, under Xvfb.

Twenty scored picks of two tomograms (imported from a CSV, as a picker's
output) are reviewed in two sittings: some rejected, one re-classed, one moved;
the second sitting resumes at the first pick not reviewed. The outputs hold
exactly the accepted and corrected picks, and feed 'generate targets' (the
training targets of a fine-tuning run).

Then the whole loop: a model trained on bright blobs also picks bright cubes it
never saw; its picks of another tomogram are reviewed at the window (the cubes
rejected); a fine-tuning on that review, its rejected picks as 'Not particles',
stops picking cubes in a third tomogram. Needs Debian's xvfb, xdotool and
imagemagick; screenshots go to test-artifacts/ at the top of the repository.
"""

from pathlib import Path

import numpy as np
import pytest
from pyworkflow.object import Pointer
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.protocols import ProtImportTomograms

from deepfinder.convert import coordinates_to_table
from deepfinder.core import io
from deepfinder.core.annotation import Review
from deepfinder.core.particles import ParticleTable
from deepfinder.core.settings import LOSSES
from deepfinder.core.tables import csv as particle_csv
from deepfinder.protocols import (
    DeepFinderProtCluster,
    DeepFinderProtGenerateTargets,
    DeepFinderProtImportParticles,
    DeepFinderProtReview,
    DeepFinderProtSegment,
    DeepFinderProtTrain,
)
from deepfinder.protocols.protocol_base import CLASSES_FROM_GROUP_ID
from deepfinder.tests.look_alikes import blobs_and_look_alikes
from deepfinder.tests.projects import FormCase, import_tomograms, write_tomograms
from deepfinder.tests.virtual_display import VirtualDisplay, open_window, press, wait_closed

SCREEN = (1280, 1024)
SHAPE = (24, 48, 64)  # z, y, x
VOXEL_SIZE = 10.0


def _picks() -> ParticleTable:
    """Twenty picks: 12 of class 1, 8 of class 2, in ta and tb, each with its own score."""
    rng = np.random.default_rng(5)
    grid = np.array([(x, y, z) for x in range(8, 60, 12) for y in range(8, 44, 12) for z in (8, 16)])
    xyz = grid[rng.choice(len(grid), 20, replace=False)].astype(float)
    return ParticleTable(
        tomo=["ta"] * 14 + ["tb"] * 6,
        class_id=[1, 2] * 8 + [1] * 4,
        xyz=xyz,
        score=rng.permutation(np.linspace(0.05, 0.95, 20)),
    )


@pytest.mark.slow
class TestReviewWindow(BaseTest):
    @classmethod
    def setUpClass(cls):
        cls.display = VirtualDisplay(SCREEN, tools=("Xvfb", "xdotool", "import"))
        setupTestProject(cls)
        rng = np.random.default_rng(3)
        write_tomograms(cls, {name: rng.normal(size=SHAPE) for name in ("ta", "tb")}, VOXEL_SIZE)
        cls.tomograms = import_tomograms(cls, "t*.mrc", VOXEL_SIZE)
        particle_csv.write(cls.getOutputPath("picks.csv"), _picks())
        cls.picks = cls.launchProtocol(
            cls.newProtocol(
                DeepFinderProtImportParticles,
                filesPath=cls.getOutputPath("picks.csv"),
                inputTomograms=cls.tomograms,
                boxSize=10,
            )
        ).coordinates

    @classmethod
    def tearDownClass(cls):
        cls.display.stop()

    # ----------------------------------------------------------------- helpers
    def _open_window(self, protocol) -> None:
        open_window(self.proj, protocol, "DeepFinder review")

    def _screenshot(self, name) -> None:
        self.display.screenshot(f"review_{name}")

    def _check_outputs(self, protocol, expected: ParticleTable):
        def ordered(table):
            return table.select(np.lexsort((table.xyz[:, 2], table.xyz[:, 1], table.xyz[:, 0], table.tomo)))

        found = ordered(coordinates_to_table(protocol.reviewedCoordinates, VOXEL_SIZE))
        expected = ordered(expected)
        self.assertEqual(len(found), len(expected))
        self.assertEqual(list(found.tomo), list(expected.tomo))
        self.assertEqual(list(found.class_id), list(expected.class_id))
        np.testing.assert_allclose(found.xyz, expected.xyz, atol=0.01)
        np.testing.assert_allclose(found.score, expected.score, atol=1e-6)
        for name, class_id in (("ribosome", 1), ("proteasome", 2)):
            output = getattr(protocol, f"coordinates_{name}")
            self.assertEqual(len(output), len(expected.of_class(class_id)), name)

    # ----------------------------------------------------------------- test
    def test_review_twenty_picks_in_two_sittings(self):
        picks = _picks()
        order = Review(picks).order  # class 1 then 2, lowest score first
        protocol = self.newProtocol(
            DeepFinderProtReview,
            inputTomograms=self.tomograms,
            inputCoordinates=[self.picks],
            classesFrom=CLASSES_FROM_GROUP_ID,
            classNames="ribosome, proteasome",
            radii="40, 30",
        )
        launched = protocol
        self._open_window(protocol)
        self._screenshot("1_opened")
        # Picks 1-8 in the order: reject, accept, reject, class 2, accept x 3, moved 1 voxel in x.
        press("r", "a", "r", "2", "a", "a", "a", "shift+Right", "Down")
        self._screenshot("2_eight_reviewed")
        press("ctrl+q")
        protocol = wait_closed(self.proj, protocol)
        decided = Review(picks)
        for position in (1, 3, 4, 5, 6):
            decided.accept(order[position])
        decided.set_class(order[3], 2)
        decided.move(order[7], picks.xyz[order[7]] + [1, 0, 0])
        self._check_outputs(protocol, decided.accepted())

        # Second sitting: it resumes at pick 9, the first not reviewed; finish the review.
        self._open_window(protocol)
        self._screenshot("3_reopened")
        press("a", "r", *["a"] * 10)
        self._screenshot("4_finished")
        press("ctrl+q")
        protocol = wait_closed(self.proj, protocol)
        for position in [8] + list(range(10, 20)):
            decided.accept(order[position])
        accepted = decided.accepted()
        self.assertEqual(len(accepted), 17)  # 3 rejected: positions 0, 2 and 9
        self._check_outputs(protocol, accepted)
        self.assertIn("rejected: 3, not reviewed: 0", "\n".join(protocol.summary()))
        rejected = coordinates_to_table(protocol.rejectedCoordinates, VOXEL_SIZE)  # as picked
        expected = picks.select(order[[0, 2, 9]])
        self.assertEqual(sorted(map(tuple, rejected.xyz.round(2))), sorted(map(tuple, expected.xyz.round(2))))

        # The reviewed picks are training coordinates: targets for fine-tuning.
        self.proj._updateProtocol(launched)  # the outputs the run wrote, in this project
        targets = self.launchProtocol(
            self.newProtocol(
                DeepFinderProtGenerateTargets,
                inputTomograms=self.tomograms,
                inputCoordinates=[
                    Pointer(launched, extended="coordinates_ribosome"),
                    Pointer(launched, extended="coordinates_proteasome"),
                ],
                radii="40, 30",
            )
        )
        for mask in targets.labelMaps.iterItems():
            labels = io.read_volume(mask.getFileName())
            expected = accepted.of_tomogram(mask.getTsId())
            for x, y, z in np.round(expected.xyz).astype(int):
                self.assertGreater(labels[z, y, x], 0)
            self.assertEqual(set(np.unique(labels)) - {0}, set(expected.class_id))


#: Pick to particle (or cube centre) distance within which they are the same, voxels.
TOLERANCE_VOXELS = 6
LOOP_SHAPE = (48, 48, 96)  # z, y, x: blobs at x < 40, cubes at x 66 and 84
# Patches of 16 voxels, the paper's loss: the look-alike test of test_core_train, through the forms.
LOOP_TRAINING = dict(patchSize=16, batchSize=4, shiftVoxels=4, stepsPerEpoch=15, validationSteps=2)


def _near(picks: ParticleTable, places: ParticleTable) -> np.ndarray:
    """Whether each pick lies within the tolerance of one of ``places``."""
    distances = np.linalg.norm(picks.xyz[:, None] - places.xyz[None], axis=-1)
    return distances.min(axis=1) <= TOLERANCE_VOXELS


@pytest.mark.slow
class TestReviewAndRetrain(BaseTest):
    """Train on blobs; review the picks of another tomogram (cubes rejected); fine-tune; pick a third."""

    @classmethod
    def setUpClass(cls):
        cls.display = VirtualDisplay(SCREEN, tools=("Xvfb", "xdotool", "import"))
        setupTestProject(cls)
        cls.truth = {}
        for seed, name in enumerate(("train", "picked", "held"), start=1):
            folder = Path(cls.getOutputPath(name))
            folder.mkdir()
            _, _, blobs, cubes, _ = blobs_and_look_alikes(
                folder, name, seed, LOOP_SHAPE, n_blobs=18, blobs_below_x=40, cube_columns_x=(66, 84)
            )
            cls.truth[name] = blobs, cubes
            tomograms = cls.launchProtocol(
                cls.newProtocol(
                    ProtImportTomograms,
                    filesPath=str(folder),
                    filesPattern=f"{name}.mrc",
                    samplingRate=VOXEL_SIZE,
                )
            ).Tomograms
            setattr(cls, f"{name}_tomograms", tomograms)
        particle_csv.write(cls.getOutputPath("blobs.csv"), cls.truth["train"][0])
        blobs = cls.launchProtocol(
            cls.newProtocol(
                DeepFinderProtImportParticles,
                filesPath=cls.getOutputPath("blobs.csv"),
                inputTomograms=cls.train_tomograms,
                boxSize=10,
            )
        ).coordinates
        cls.base = cls._train(cls.train_tomograms, [blobs], epochs=6).model

    @classmethod
    def tearDownClass(cls):
        cls.display.stop()

    @classmethod
    def _train(cls, tomograms, coordinates, epochs, **extra):
        targets = cls.launchProtocol(
            cls.newProtocol(
                DeepFinderProtGenerateTargets,
                inputTomograms=tomograms,
                inputCoordinates=coordinates,
                classNames="blob",
                radii="40",
            )
        )
        return cls.launchProtocol(
            cls.newProtocol(
                DeepFinderProtTrain,
                inputLabelMaps=targets.labelMaps,
                inputCoordinates=coordinates,
                classNames="blob",
                loss=LOSSES.index("dice"),
                epochs=epochs,
                **LOOP_TRAINING,
                **extra,
            )
        )

    def _picks(self, name: str, model):
        tomograms = getattr(self, f"{name}_tomograms")
        segment = self.launchProtocol(
            self.newProtocol(DeepFinderProtSegment, inputTomograms=tomograms, inputModel=model)
        )
        return self.launchProtocol(
            self.newProtocol(
                DeepFinderProtCluster, inputTomograms=tomograms, inputLabelMaps=segment.labelMaps, radii="40"
            )
        ).coordinates

    def test_fine_tuning_on_a_review_stops_picking_look_alikes(self):
        picked = self._picks("picked", self.base)
        blobs, cubes = self.truth["picked"]
        table = coordinates_to_table(picked, VOXEL_SIZE)
        on_cubes = _near(table, cubes)
        self.assertGreaterEqual(on_cubes.sum(), 3, "the base model should take cubes for blobs")

        review = self.newProtocol(
            DeepFinderProtReview,
            inputTomograms=self.picked_tomograms,
            inputCoordinates=[picked],
            classesFrom=CLASSES_FROM_GROUP_ID,
            classNames="blob",
            radii="40",
        )
        open_window(self.proj, review, "DeepFinder review")
        self.display.screenshot("loop_1_opened")
        # Lowest score first: reject the picks on cubes, accept the others, 20 at most.
        order = Review(table).order[:20]
        press(*("r" if on_cubes[index] else "a" for index in order))
        self.display.screenshot("loop_2_reviewed")
        press("ctrl+q")
        self.assertEqual(len(wait_closed(self.proj, review).rejectedCoordinates), on_cubes[order].sum())
        self.proj._updateProtocol(review)  # the outputs the run wrote, in this project

        tuned = self._train(
            self.picked_tomograms,
            [Pointer(review, extended="coordinates_blob")],
            epochs=4,
            initialModel=self.base,
            backgroundCoordinates=[Pointer(review, extended="rejectedCoordinates")],
        )
        self.assertIn("background points (class 0)", Path(tuned.getStdoutLog()).read_text())

        blobs, cubes = self.truth["held"]
        before = coordinates_to_table(self._picks("held", self.base), VOXEL_SIZE)
        after = coordinates_to_table(self._picks("held", tuned.model), VOXEL_SIZE)
        on_cubes_before, on_cubes_after = _near(before, cubes).sum(), _near(after, cubes).sum()
        self.assertGreaterEqual(on_cubes_before, 3)
        self.assertLessEqual(on_cubes_after, on_cubes_before // 3, (on_cubes_before, on_cubes_after))
        # The blobs are still found.
        self.assertGreaterEqual(_near(blobs, after).mean(), 0.8)


class TestReviewForm(FormCase):
    """Bad input is refused before any window opens."""

    protocol_class = DeepFinderProtReview

    def test_picks_are_required(self):
        self.assertIn("Give the picks to review", self._errors(inputTomograms=self.tomos_a, radii="40"))
        self.assertEqual(
            self._errors(inputTomograms=self.tomos_a, inputCoordinates=[self.coords_a], radii="40"), ""
        )

    def test_radii_must_match_the_classes(self):
        errors = self._errors(
            inputTomograms=self.tomos_a,
            inputCoordinates=[self.coords_a],
            classNames="a, b",
            radii="40, 30, 20",
        )
        self.assertIn("one per class: a, b", errors)

    def test_picks_must_belong_to_the_tomograms(self):
        errors = self._errors(inputTomograms=self.tomos_b, inputCoordinates=[self.coords_a], radii="40")
        self.assertIn("not in the input tomograms (ua)", errors)

    def test_groupid_classes_must_start_at_one(self):
        errors = self._errors(
            inputTomograms=self.tomos_a,
            inputCoordinates=[self.coords_a],
            classesFrom=CLASSES_FROM_GROUP_ID,
            radii="40",
        )
        self.assertIn("groupId 0", errors)
