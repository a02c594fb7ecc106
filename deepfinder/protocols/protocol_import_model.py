"""Bring a trained DeepFinder model into a project."""

from __future__ import annotations

import json
import os
import shutil
from enum import Enum

import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol
from pyworkflow.constants import BETA

from ..convert import class_table
from ..core.settings import TrainingSettings, default_of
from ..objects import DeepFinderModel


class DeepFinderImportModelOutputs(Enum):
    model = DeepFinderModel


class DeepFinderProtImportModel(EMProtocol):
    """Import trained DeepFinder weights: ours (*.weights.h5) or a Keras .h5 of the upstream DeepFinder.

    The weights are checked by loading them into the U-net before the model is
    registered, so a wrong file or class count is reported at once.
    """

    _label = "import model"
    _devStatus = BETA
    _possibleOutputs = DeepFinderImportModelOutputs

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "weightsFile",
            params.PathParam,
            label="Weights file",
            important=True,
            help="A *.weights.h5 written by this plugin (its .json beside it gives the "
            "classes), or the .h5 weights of a model trained with the upstream "
            "DeepFinder.",
        )
        form.addParam(
            "classNames",
            params.StringParam,
            default="",
            label="Class names",
            help="Comma-separated, in label order without the background, e.g. "
            "'ribosome, proteasome'. Empty: from the .json beside the weights.",
        )
        form.addParam(
            "patchSize",
            params.IntParam,
            default=default_of(TrainingSettings, "patch_size"),
            label="Training patch size (px)",
        )
        form.addParam(
            "samplingRate",
            params.FloatParam,
            default=0.0,
            label="Training sampling rate (Å/px)",
            help="The sampling rate of the tomograms the model was trained on; 0: "
            "from the .json beside the weights.",
        )

    # ----------------------------------------------------------------- steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.importStep)

    def importStep(self):
        from ..core import io
        from ..core.model import load_model, save_model

        names = self._classNames()
        model, metadata = load_model(self.weightsFile.get(), n_classes=len(names))
        metadata.update(class_names=names, patch_size=self.patchSize.get(), voxel_size=self._samplingRate())
        weights = save_model(model, self._getExtraPath("model.weights.h5"), metadata)
        output = DeepFinderModel(
            weightsFile=str(weights),
            classNames=names,
            patchSize=self.patchSize.get(),
            samplingRate=self._samplingRate(),
        )
        self._defineOutputs(**{DeepFinderImportModelOutputs.model.name: output})
        history = os.path.join(os.path.dirname(self.weightsFile.get()), "history.json")
        if os.path.exists(history):
            with io.atomic_output(self._getExtraPath("history.json")) as temporary:
                shutil.copy(history, temporary)

    # ----------------------------------------------------------------- helpers
    def _metadata(self) -> dict:
        from ..core.model import metadata_path

        path = metadata_path(self.weightsFile.get())
        return json.loads(path.read_text()) if path.exists() else {}

    def _classNames(self) -> list[str]:
        given = [name.strip() for name in self.classNames.get("").split(",") if name.strip()]
        return ["background"] + given if given else self._metadata().get("class_names", [])

    def _samplingRate(self) -> float:
        return self.samplingRate.get() or self._metadata().get("voxel_size", 0.0)

    # ----------------------------------------------------------------- info
    def _validate(self):
        path = self.weightsFile.get() or ""
        if not os.path.isfile(path):
            return [f"Weights file not found: '{path}'."]
        if not path.endswith(".h5"):
            return [f"{path} is not a Keras .h5 weights file."]
        if len(self._classNames()) < 2:
            return ["Give the class names: no .json with them lies beside the weights."]
        if not self._samplingRate():
            return ["Give the sampling rate the model was trained at."]
        return []

    def _summary(self):
        names = self._classNames() if os.path.isfile(self.weightsFile.get() or "") else []
        return [f"Classes: {class_table(names)}"] if names else []
