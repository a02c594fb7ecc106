"""Consensus of several pickers on the same tomograms."""

from __future__ import annotations

import numpy as np
import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol
from pyworkflow.constants import BETA
from tomo.objects import Coordinate3D, SetOfCoordinates3D

from ..convert import coordinates_to_table, new_coordinate_set, tomograms_by_tsid, unique_values
from ..core.consensus import consensus
from ..core.particles import ParticleTable
from .protocol_base import coordinates_without_sampling_rate

UNION, INTERSECTION = "union", "intersection"


class DeepFinderProtConsensus(EMProtocol):
    """Compare pickers (e.g. DeepFinder and template matching) on the same tomograms.

    Particles of the input sets are matched one-to-one within a distance, per
    tomogram (and per class when classes are used). Outputs: the union (each
    particle once, with the best score and, in its label, which pickers found
    it), the intersection (found by all) and, per picker, what only it found.
    """

    _label = "consensus of pickers"
    _devStatus = BETA
    # A dict, not an Enum: Enum members of equal value are aliases of one another.
    _possibleOutputs = {UNION: SetOfCoordinates3D, INTERSECTION: SetOfCoordinates3D}

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "inputCoordinates",
            params.MultiPointerParam,
            pointerClass="SetOfCoordinates3D",
            label="Pickers' particles",
            important=True,
            help="Two or more coordinate sets of the same tomograms, one per picker.",
        )
        form.addParam(
            "useGroupId",
            params.BooleanParam,
            default=False,
            label="Match classes by groupId?",
            help="No: each set is one species and all picks can match. Yes: only picks "
            "with the same groupId match (sets holding several classes).",
        )
        form.addParam(
            "toleranceA",
            params.FloatParam,
            default=0.0,
            validators=[params.GE(0)],
            label="Match distance (Å)",
            help="Picks of two pickers closer than this are the same particle. "
            "0: half the box size of the first set (about the particle radius).",
        )

    # ----------------------------------------------------------------- steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.consensusStep)

    def consensusStep(self):
        first = self._sets()[0]
        sampling = first.getSamplingRate()
        pickers = [self._table(coords, sampling) for coords in self._sets()]
        result = consensus(pickers, tolerance_voxels=self._toleranceA() / sampling)
        found_by = np.array([",".join(str(k + 1) for k in np.flatnonzero(row)) for row in result.found_by])
        outputs = {UNION: (result.union, found_by), INTERSECTION: (result.intersection(), None)}
        for k in range(len(pickers)):
            outputs[f"only{k + 1}"] = (result.only(k), None)
        for name, (table, labels) in outputs.items():
            coordinates = new_coordinate_set(
                self._getPath(),
                name,
                first.getPrecedents(),
                sampling,
                first.getBoxSize(),
                table,
                labels=labels,
            )
            self._defineOutputs(**{name: coordinates})
            for pointer in self.inputCoordinates:
                self._defineSourceRelation(pointer, coordinates)

    # ----------------------------------------------------------------- helpers
    def _sets(self) -> list:
        return [pointer.get() for pointer in self.inputCoordinates]

    def _table(self, coordinates, sampling: float) -> ParticleTable:
        return coordinates_to_table(coordinates, sampling, class_id=None if self.useGroupId else 1)

    def _toleranceA(self) -> float:
        first = self._sets()[0]
        return self.toleranceA.get() or first.getBoxSize() * first.getSamplingRate() / 2

    # ----------------------------------------------------------------- info
    def _validate(self):
        sets = self._sets()
        if len(sets) < 2:
            return ["Give at least two coordinate sets (one per picker)."]
        errors = coordinates_without_sampling_rate(sets)
        tomos = [unique_values(coords, Coordinate3D.TOMO_ID_ATTR) for coords in sets]
        if not set.intersection(*tomos):
            errors.append("The sets share no tomogram (tsId): compare picks of the same tomograms.")
        known = set(tomograms_by_tsid(sets[0].getPrecedents()))
        for coords, ids in zip(sets[1:], tomos[1:]):
            if ids - known:
                errors.append(
                    f"{coords.getNameId()} has particles of tomograms that the first set "
                    f"does not know ({', '.join(sorted(ids - known)[:5])})."
                )
        if not self.toleranceA.get() and not sets[0].getBoxSize():
            errors.append("The first set has no box size: give the match distance in Å.")
        return errors

    def _summary(self):
        if not self.hasAttribute(UNION):
            return [f"{len(self.inputCoordinates)} pickers to compare."]
        lines = [f"Union: {self.union.getSize()} particles; found by all: {self.intersection.getSize()}."]
        for k, pointer in enumerate(self.inputCoordinates, start=1):
            only = getattr(self, f"only{k}", None)
            if only is not None:
                lines.append(f"Only picker {k} ({pointer.get().getNameId()}): {only.getSize()}")
        return lines

    def _methods(self):
        return [
            "Particles of several pickers were matched one-to-one within a distance, as in "
            "the S_E vs S_DF analysis of [Moebel2021]."
        ]

    def _citations(self):
        return ["Moebel2021"]
