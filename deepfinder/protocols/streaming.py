"""Tomograms processed as they arrive: one step per tomogram, inserted while the inputs are still open.

Scipion's streaming conventions: a protocol that overrides ``_stepsCheck`` may take sets that
another run is still filling. Every few seconds the check reads the inputs again, inserts a
step for each tomogram that has arrived in all of them, and lets the waiting closing step run
once every input is closed. The tomograms already done are recorded on an output set, so a
run that is continued skips them, and a restart (which deletes the outputs) does them again.
"""

from __future__ import annotations

import json
import logging

import pyworkflow.object as pwobj
from pyworkflow.protocol import STATUS_NEW

logger = logging.getLogger(__name__)

#: The attribute of the recording output set that lists the tsIds done.
TSIDS_DONE_ATTR = "_deepfinderTsIdsDone"


def read_input(pointer) -> tuple[dict, bool]:
    """The items of the set ``pointer`` points to, as they are now, by tsId, and whether it is closed.

    The set is read from its file with a connection of its own: the run's copy of the set
    was loaded when the run started and does not see what the producing run added since.
    """
    current = pointer.get()
    fresh = type(current)(filename=current.getFileName())
    try:
        fresh.loadAllProperties()
        items = {item.getTsId(): item.clone() for item in fresh.iterItems()}
        return items, fresh.isStreamClosed()
    finally:
        fresh.close()


def tsids_done(output_set) -> set[str]:
    """The tsIds recorded as done on ``output_set`` (none for no set)."""
    value = getattr(output_set, TSIDS_DONE_ATTR, None) if output_set is not None else None
    return set(json.loads(value.get())) if value is not None and value.get() else set()


def record_done(output_set, tsId: str) -> None:
    """Record on ``output_set`` that ``tsId`` is done (written with the set's next write)."""
    done = sorted(tsids_done(output_set) | {tsId})
    if getattr(output_set, TSIDS_DONE_ATTR, None) is None:
        setattr(output_set, TSIDS_DONE_ATTR, pwobj.String())
    # Set in place: a new object each time would add a row to the project database each time.
    getattr(output_set, TSIDS_DONE_ATTR).set(json.dumps(done))


class TomogramStreaming:
    """One step per tomogram, for tomograms that arrive in open input sets (a protocol mixin).

    A protocol lists in ``_streamedInputs`` the names of its pointer parameters whose sets
    must all hold a tomogram (by tsId) before its step runs; ``_tomogramStep`` is the step
    function (one tsId argument), ``closeOutputStep`` runs once all inputs are closed and
    all steps are done, and ``_doneOutputName`` names the output set that records the
    tsIds done (see :func:`record_done`). A step gets its input items with :meth:`_arrived`.
    """

    _streamedInputs: tuple[str, ...] = ()
    _doneOutputName: str = ""
    _tomogramStepNeedsGPU = False

    def _insertAllSteps(self):
        self._arrivals = {name: {} for name in self._streamedInputs}
        done = tsids_done(getattr(self, self._doneOutputName, None))
        if done:
            logger.info("Tomograms done in an earlier execution, not redone: %s", ", ".join(sorted(done)))
        self._tsIdsInserted = set(done)
        self._closeStepId = self._insertFunctionStep(
            self.closeOutputStep, prerequisites=[], wait=True, needsGPU=False
        )
        self._insertArrivedSteps()

    def _stepsCheck(self):
        if self._insertArrivedSteps():
            self.updateSteps()

    def _insertArrivedSteps(self) -> bool:
        """Insert a step for each tomogram now in all inputs; free the closing step when they are closed.

        Returns whether the list of steps changed.
        """
        all_closed = True
        for name in self._streamedInputs:
            items, closed = read_input(getattr(self, name))
            self._arrivals[name].update(items)
            all_closed = all_closed and closed
        ready = set.intersection(*(set(items) for items in self._arrivals.values()))
        new = sorted(ready - self._tsIdsInserted)
        close_step = self._steps[self._closeStepId - 1]
        for tsId in new:
            step_id = self._insertFunctionStep(
                self._tomogramStep, tsId, prerequisites=[], needsGPU=self._tomogramStepNeedsGPU
            )
            close_step.addPrerequisites(step_id)
            self._tsIdsInserted.add(tsId)
        closing = all_closed and close_step.isWaiting()
        if closing:
            missing = set.union(*(set(items) for items in self._arrivals.values())) - ready
            if missing:
                logger.warning(
                    "Inputs closed: %s not in every input, not processed.", ", ".join(sorted(missing))
                )
            close_step.setStatus(STATUS_NEW)
        return bool(new) or closing

    def _arrived(self, name: str, tsId: str):
        """The item ``tsId`` of the input ``name``, as it was when its step was inserted."""
        return self._arrivals[name][tsId]
