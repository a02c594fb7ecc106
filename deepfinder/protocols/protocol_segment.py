"""Label every voxel of tomograms with a trained DeepFinder model."""

from __future__ import annotations

import os
from enum import Enum

import pyworkflow.protocol.params as params
from pyworkflow.constants import BETA
from pyworkflow.protocol import STEPS_PARALLEL
from tomo.objects import SetOfTomoMasks

from .. import Plugin
from ..constants import DEEPFINDER_PRECISION
from ..convert import class_table, new_tomo_mask, set_class_names, set_score_files, tomograms_by_tsid
from ..core.errors import InputError
from ..core.segment import check_coarse_model, score_map_paths, training_amplitude_profile
from ..core.settings import SegmentationSettings
from .protocol_base import (
    DeepFinderEngineProtocol,
    add_masks_param,
    add_setting_param,
    form_settings,
    mask_arguments,
    mask_errors,
    run_engine,
    settings_arguments,
    settings_errors,
    volumes_without_sampling_rate,
)
from .streaming import TomogramStreaming, record_done

#: The form parameter of each segmentation setting (precision is the Scipion variable
#: DEEPFINDER_PRECISION; the crop keeps the engine's default).
FORM_PARAMS = {
    "patch_size": "patchSize",
    "batch_size": "batchSize",
    "bin_scores": "binScores",
    "average_rotations": "averageRotations",
    "match_spectrum": "matchSpectrum",
}


class DeepFinderSegmentOutputs(Enum):
    labelMaps = SetOfTomoMasks


class DeepFinderProtSegment(TomogramStreaming, DeepFinderEngineProtocol):
    """Segment tomograms with a trained DeepFinder model: one label map per tomogram.

    Tomograms are processed one per step, in parallel when several GPUs or threads
    are given, and each label map is added to the output as soon as it is done.
    The tomograms may still be arriving (an open set, e.g. during acquisition): each
    is segmented when it arrives, and the label maps close when the tomograms do.
    """

    _label = "segment"
    _devStatus = BETA
    _possibleOutputs = DeepFinderSegmentOutputs
    stepsExecutionMode = STEPS_PARALLEL
    _streamedInputs = ("inputTomograms",)
    _doneOutputName = DeepFinderSegmentOutputs.labelMaps.name
    _tomogramStepNeedsGPU = True

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "inputTomograms",
            params.PointerParam,
            pointerClass="SetOfTomograms",
            label="Tomograms",
            important=True,
            help="At the sampling rate of the training tomograms.",
        )
        form.addParam(
            "inputModel",
            params.PointerParam,
            pointerClass="DeepFinderModel",
            label="Trained model",
            important=True,
        )
        form.addParam(
            "coarseModel",
            params.PointerParam,
            pointerClass="DeepFinderModel",
            allowsNull=True,
            label="Coarse model (optional)",
            help="A second model, trained on the same classes at twice the sampling rate of the "
            "trained model (train form: Binning 2, on the same inputs). It segments each tomogram binned by "
            "2 and its scores are averaged with the trained model's: it sees twice the context, the "
            "trained model twice the detail, so that large and small particles are both named well. "
            "It costs a second training; the binned tomogram has an eighth of the voxels. Train the "
            "coarse model first and start the trained model's training from it (train form: Start "
            "from a model): the pair then names the classes better.",
        )
        add_masks_param(form, "outside its mask a tomogram is labelled background and not computed")
        form.addParam(
            "saveScores",
            params.BooleanParam,
            default=True,
            label="Keep score maps?",
            help="Per-class probability maps (float16): clustering then scores each "
            "particle by its mean probability. They take Ncl x 2 bytes per voxel.",
        )
        add_setting_param(
            form,
            SegmentationSettings,
            FORM_PARAMS,
            "average_rotations",
            params.BooleanParam,
            label="Average 4 rotations (up to 4x slower)?",
        )
        add_setting_param(
            form,
            SegmentationSettings,
            FORM_PARAMS,
            "match_spectrum",
            params.BooleanParam,
            label="Match the training tomograms' spectrum?",
        )
        add_setting_param(
            form,
            SegmentationSettings,
            FORM_PARAMS,
            "bin_scores",
            params.BooleanParam,
            expertLevel=params.LEVEL_ADVANCED,
            label="Bin scores 2x before labelling?",
        )
        add_setting_param(
            form,
            SegmentationSettings,
            FORM_PARAMS,
            "patch_size",
            params.IntParam,
            expertLevel=params.LEVEL_ADVANCED,
            label="Tile size (px)",
        )
        add_setting_param(
            form,
            SegmentationSettings,
            FORM_PARAMS,
            "batch_size",
            params.IntParam,
            validators=[params.GT(0)],
            expertLevel=params.LEVEL_ADVANCED,
            label="Tiles per batch",
        )
        form.addHidden(params.USE_GPU, params.BooleanParam, default=True, label="Use GPU?")
        form.addHidden(params.GPU_LIST, params.StringParam, default="0", label="GPU IDs")
        form.addParallelSection(threads=1, mpi=1)

    # ----------------------------------------------------------------- steps
    def segmentStep(self, tsId: str):
        tomogram = self._arrived("inputTomograms", tsId)
        model = self.inputModel.get()
        labels = self._getExtraPath(f"{tsId}_labels.mrc")
        scores = self._getExtraPath(f"{tsId}_scores.mrc") if self.saveScores else None
        score_files = score_map_paths(scores, len(model.getClassNames())) if scores else {}
        arguments = ["--tomogram", tomogram.getFileName(), "--model", model.getWeightsFile()]
        arguments += ["--n-classes", len(model.getClassNames()), "--labels", labels]
        arguments += ["--scores", scores] if scores else []
        if self.coarseModel.get() is not None:
            arguments += ["--coarse-model", self.coarseModel.get().getWeightsFile()]
        with self._lock:  # step threads share the input sets' database connections
            arguments += mask_arguments(self.inputMasks.get(), tsId)
        run_engine(
            self,
            "segment",
            arguments + settings_arguments(self, f"{tsId}_segment", self._settings()),
            outputs=[labels, *map(str, score_files.values())],
            subject=f"Tomogram {tsId}",
            uses_gpu=True,
        )
        from ..figures.pictures import slices_page, write_png

        write_png(
            self._getExtraPath(f"{tsId}_labels.png"),
            slices_page(tomogram.getFileName(), model.getClassNames(), labels, title=tsId),
        )
        self._appendLabelMap(tomogram, labels, score_files)

    _tomogramStep = segmentStep

    def closeOutputStep(self):
        self._closeOutputSet()

    # ----------------------------------------------------------------- helpers
    def _settings(self) -> SegmentationSettings:
        """The segmentation settings of the form (and the Scipion variable of the precision)."""
        return form_settings(
            self, SegmentationSettings, FORM_PARAMS, precision=Plugin.getVar(DEEPFINDER_PRECISION)
        )

    def _appendLabelMap(self, tomogram, labels: str, score_files: dict):
        mask = new_tomo_mask(tomogram, labels)
        if self.binScores:
            mask.setSamplingRate(tomogram.getSamplingRate() * 2)
        set_score_files(mask, score_files)
        with self._lock:
            name = DeepFinderSegmentOutputs.labelMaps.name
            label_maps = getattr(self, name, None)
            if label_maps is None:
                label_maps = SetOfTomoMasks.create(self._getPath(), prefix="labelmaps")
                label_maps.copyInfo(self.inputTomograms.get())
                label_maps.setSamplingRate(mask.getSamplingRate())
                label_maps.setStreamState(label_maps.STREAM_OPEN)
                set_class_names(label_maps, self.inputModel.get().getClassNames())
                label_maps.append(mask)
                record_done(label_maps, tomogram.getTsId())
                self._defineOutputs(**{name: label_maps})
                self._defineSourceRelation(self.inputTomograms, label_maps)
                self._defineSourceRelation(self.inputModel, label_maps)
                if self.coarseModel.get() is not None:
                    self._defineSourceRelation(self.coarseModel, label_maps)
            else:
                label_maps.enableAppend()
                label_maps.append(mask)
                record_done(label_maps, tomogram.getTsId())
                label_maps.write()
                self._store(label_maps)

    # ----------------------------------------------------------------- info
    def _validate(self):
        # The settings' check names a wrong precision too, but not as the Scipion variable it is.
        errors = Plugin.precisionErrors() or settings_errors(self, self._settings(), FORM_PARAMS)
        model = self.inputModel.get()
        tomograms = self.inputTomograms.get()
        errors += volumes_without_sampling_rate(tomograms, "tomograms")
        errors += mask_errors(self.inputMasks.get(), tomograms_by_tsid(tomograms))
        if not os.path.exists(model.getWeightsFile() or ""):
            errors.append(f"The model's weights file is missing: {model.getWeightsFile()}")
        elif self.matchSpectrum:
            try:
                training_amplitude_profile(model.getWeightsFile())
            except InputError as error:
                errors.append(str(error))
        coarse = self.coarseModel.get()
        if coarse is not None:
            if not os.path.exists(coarse.getWeightsFile() or ""):
                errors.append(f"The coarse model's weights file is missing: {coarse.getWeightsFile()}")
            elif os.path.exists(model.getWeightsFile() or ""):
                try:
                    check_coarse_model(model.getWeightsFile(), coarse.getWeightsFile())
                except InputError as error:
                    errors.append(str(error))
        return errors

    def _warnings(self):
        model, tomograms = self.inputModel.get(), self.inputTomograms.get()
        if model.getSamplingRate() and tomograms.getSamplingRate():
            ratio = tomograms.getSamplingRate() / model.getSamplingRate()
            if abs(ratio - 1) > 0.1:
                coarse = (
                    " A model trained at twice the sampling of the tomograms (train form: Binning 2) "
                    "is the Coarse model of a full-size model."
                    if abs(ratio - 0.5) < 0.05
                    else ""
                )
                return [
                    f"The tomograms ({tomograms.getSamplingRate():.2f} Å/px) are not at the "
                    f"model's sampling rate ({model.getSamplingRate():.2f} Å/px): particles will "
                    "look {:.1f}x {} than in training.".format(
                        ratio if ratio > 1 else 1 / ratio, "smaller" if ratio > 1 else "larger"
                    )
                    + coarse
                ]
        return []

    def _summary(self):
        summary = [f"Classes: {class_table(self.inputModel.get().getClassNames())}"]
        name = DeepFinderSegmentOutputs.labelMaps.name
        if self.hasAttribute(name):
            summary.append(
                f"{getattr(self, name).getSize()} of "
                f"{self.inputTomograms.get().getSize()} tomograms segmented."
            )
        return summary

    def _methods(self):
        rotations = (
            ", averaging the predictions of each tomogram and of its 180-degree rotations about Z, Y and X"
            if self.averageRotations
            else ""
        )
        inside = " inside a mask of each tomogram" if self.inputMasks.get() is not None else ""
        coarse = (
            ", its class scores averaged with those of a second U-net trained at twice the pixel size "
            "on the tomograms binned by 2"
            if self.coarseModel.get() is not None
            else ""
        )
        return [
            f"Tomograms were segmented{inside} with a DeepFinder 3D U-net [Moebel2021]{coarse}{rotations}."
        ]

    def _citations(self):
        return ["Moebel2021"]
