"""Precision, recall and F1 of picked particles against reference particles."""

from __future__ import annotations

import os

import pyworkflow.protocol.params as params
from pyworkflow.constants import BETA
from tomo.objects import Coordinate3D

from ..convert import unique_values
from .protocol_base import (
    CLASSES_FROM_GROUP_ID,
    DeepFinderProtBase,
    add_classes_from_param,
    classes_table,
    coordinates_without_sampling_rate,
)


class DeepFinderProtEvaluate(DeepFinderProtBase):
    """Score picked particles against reference particles of the same tomograms.

    Per class and overall precision, recall and F1 (a pick matches one reference
    particle of its class within a distance, one-to-one), the class confusion
    (which reference class each pick lies on: the classes a model mixes up), and
    the same figures against a threshold on the picks' score, to choose that
    threshold.
    """

    _label = "evaluate picking"
    _devStatus = BETA

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "pickedCoordinates",
            params.MultiPointerParam,
            pointerClass="SetOfCoordinates3D",
            label="Picked particles",
            important=True,
            help="E.g. the 'coordinates' output of DeepFinder cluster (classes by "
            "groupId), or one set per class.",
        )
        add_classes_from_param(form, "pickedClassesFrom", CLASSES_FROM_GROUP_ID, "Picked classes from")
        self._defineClassParams(form, label="Reference particles (one set per class)")
        form.addParam(
            "toleranceA",
            params.FloatParam,
            default=0.0,
            validators=[params.GE(0)],
            label="Match distance (Å)",
            help="A pick within this distance of a reference particle of the same class "
            "is a true positive. 0: half the box size of the reference set, "
            "about the particle radius.",
        )

    # ----------------------------------------------------------------- steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.evaluateStep)

    def evaluateStep(self):
        from ..core import evaluate, io
        from ..core.settings import EVERY_SCORE, EvaluationSettings
        from ..core.steps.evaluate import evaluate_particles, write_evaluation
        from ..figures.pictures import EVALUATION_SIZE, evaluation_page, write_png

        sampling = self._coordinateSets()[0].getSamplingRate()
        picked = classes_table(self.pickedCoordinates, self.pickedClassesFrom.get(), sampling)
        tolerance = self._toleranceA() / sampling
        names = dict(enumerate(self._classNamesList()))
        evaluation = evaluate_particles(
            picked,
            self._particleTable(sampling),
            EvaluationSettings(tolerance_voxels=tolerance, sweep=EVERY_SCORE),
            class_names=names,
        )
        report = (
            f"{evaluate.format_table(evaluation.rows)}\n\nPicks by the class of the nearest reference "
            f"particle within {tolerance * sampling:.0f} Å:\n{evaluation.confusion}"
        )
        with io.atomic_output(self._resultFile()) as temporary:
            temporary.write_text(report + "\n")
        write_evaluation(
            evaluation,
            scores_csv=self._getExtraPath("evaluation.csv"),
            sweep_csv=self._getExtraPath("threshold_sweep.csv"),
            thresholds_json=self.bestThresholdsFile(),
            class_names=names,
            source=f"best F1 of evaluation {self.getObjLabel()}",
        )
        self.info(report)
        write_png(
            self._getExtraPath("evaluation.png"),
            evaluation_page(self._getExtraPath("evaluation.csv"), self._getExtraPath("threshold_sweep.csv")),
            EVALUATION_SIZE,
        )

    # ----------------------------------------------------------------- helpers
    def bestThresholdsFile(self) -> str:
        """The score threshold of best F1 of each class (JSON), read by the cluster protocol."""
        return self._getExtraPath("best_thresholds.json")

    def _resultFile(self) -> str:
        return self._getExtraPath("evaluation.txt")

    def _toleranceA(self) -> float:
        if self.toleranceA.get():
            return self.toleranceA.get()
        reference = self._coordinateSets()[0]
        return reference.getBoxSize() * reference.getSamplingRate() / 2

    # ----------------------------------------------------------------- info
    def _validate(self):
        errors = self._validateClasses()
        picked_tomos, reference_tomos = set(), set()
        for pointer in self.pickedCoordinates:
            picked_tomos.update(unique_values(pointer.get(), Coordinate3D.TOMO_ID_ATTR))
        for coords in self._coordinateSets():
            reference_tomos.update(unique_values(coords, Coordinate3D.TOMO_ID_ATTR))
        errors += coordinates_without_sampling_rate(self._coordinateSets())
        if picked_tomos and not picked_tomos & reference_tomos:
            errors.append(
                "The picked and the reference particles share no tomogram (tsId): "
                "compare picks with references of the same tomograms."
            )
        if not self.toleranceA.get() and not self._coordinateSets()[0].getBoxSize():
            errors.append("The reference set has no box size: give the match distance in Å.")
        return errors

    def _summary(self):
        if os.path.exists(self._resultFile()):
            with open(self._resultFile()) as handle:
                return [line.rstrip() for line in handle]
        return ["Not evaluated yet."]

    def _methods(self):
        return [
            "Picked particles were scored against reference particles by one-to-one "
            "matching within a distance (precision, recall, F1)."
        ]
