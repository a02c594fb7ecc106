"""Review a picker's picks by hand: accept, reject or correct them, for fine-tuning a model."""

from __future__ import annotations

import os

from tomo.objects import SetOfCoordinates3D

from ..convert import tomograms_by_tsid
from ..core.annotation import ACCEPTED, PENDING, REJECTED, ParticleClass, Review
from ..core.particles import ParticleTable
from .protocol_annotate import DeepFinderProtAnnotate

REVIEW_FILE = "review.json"


REVIEWED, REJECTED_PICKS = "reviewedCoordinates", "rejectedCoordinates"


class DeepFinderProtReview(DeepFinderProtAnnotate):
    """Review picks (of the cluster protocol or any picker) one by one, in linked XY, XZ and YZ slices.

    The picks are listed class by class, lowest score first (the likeliest false
    positives); the slices follow the selected pick. Keys: a accept, r reject,
    1-9 change the class, Shift + arrows move; or drag a pick with the mouse.
    Every decision is saved in the run folder: run the protocol again with
    'Continue' to go on where you stopped. Outputs the accepted and corrected
    picks, one set per class (named after it) and one with all classes
    (groupId = class): training coordinates for 'generate targets' and a train
    run that starts from the picker's model (fine-tuning). The rejected picks
    (groupId = the class picked) go to that train run as 'Not particles', so
    that it learns the places it mistook for particles. Particles of the reviewed
    tomograms missing from the training coordinates are learned as background:
    review every class of those tomograms, or train with their other picks too.
    """

    _label = "review picks"
    # Not an Enum: members of equal values (both sets of coordinates) would be one.
    _possibleOutputs = {REVIEWED: SetOfCoordinates3D, REJECTED_PICKS: SetOfCoordinates3D}
    _allClassesOutput = REVIEWED

    def _defineParams(self, form):
        super()._defineParams(form)
        picks = form.getParam("inputCoordinates")
        picks.label.set("Picks to review")
        picks.allowsNull.set(False)
        picks.help.set(
            "The picks to review, e.g. the cluster protocol's output: its sets per class "
            "(one class per set) or its set of all classes (classes from groupId). "
            "Picks without a score come last in each class."
        )

    # ----------------------------------------------------------------- steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.reviewStep, interactive=True)

    def reviewStep(self):
        from ..viewers.review_window import review_picks

        sampling = self.inputTomograms.get().getSamplingRate()
        classes = self._savedClasses() or self._formClasses()
        review = self._review()
        self._saveReview(review, classes)
        shown = set(review.picks.tomo)
        tomograms = [
            (tsId, tomogram.getFileName())
            for tsId, tomogram in tomograms_by_tsid(self.inputTomograms.get()).items()
            if tsId in shown
        ]
        review_picks(tomograms, classes, review, sampling, self._saveReview, self.createOutputs)
        self.createOutputs()

    # ----------------------------------------------------------------- files
    def _review(self) -> Review:
        """The review of the input picks: resumed from the run folder, or new."""
        picks = self._inputParticles(self.inputTomograms.get().getSamplingRate())
        path = self._getExtraPath(REVIEW_FILE)
        return Review.resume(picks, path) if os.path.exists(path) else Review(picks)

    def _saveReview(self, review: Review, classes: list[ParticleClass]):
        review.save(self._getExtraPath(REVIEW_FILE))
        self._saveClasses(classes)

    def _annotatedParticles(self) -> ParticleTable:
        return self._review().accepted()

    def _otherOutputTables(self) -> dict[str, ParticleTable]:
        return {REJECTED_PICKS: self._review().rejected()}

    # ----------------------------------------------------------------- info
    def _validate(self):
        errors = super()._validate()
        if not len(self.inputCoordinates):
            errors.append("Give the picks to review (one or more coordinate sets).")
        return errors

    def _summary(self):
        if not os.path.exists(self._getExtraPath(REVIEW_FILE)):
            return ["Not reviewed yet: the window opens when the protocol runs."]
        counts = Review.saved_counts(self._getExtraPath(REVIEW_FILE))
        return [
            f"Picks accepted (or corrected): {counts[ACCEPTED]}, rejected: {counts[REJECTED]}, "
            f"not reviewed: {counts[PENDING]}.",
            "Run again with 'Continue' to go on reviewing.",
        ]

    def _methods(self):
        return [
            "Picks were reviewed by hand (accepted, rejected or corrected) in orthoslices "
            "with the DeepFinder annotation tool [Moebel2021]."
        ]
