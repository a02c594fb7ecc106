"""Train the DeepFinder U-net on label maps."""

from __future__ import annotations

import json
import os
from enum import Enum

import pyworkflow.protocol.params as params
from pyworkflow.constants import BETA

from .. import Plugin
from ..constants import DEEPFINDER_PRECISION
from ..convert import class_table, get_class_names, tomograms_by_tsid
from ..core.train import LOSSES, setting_warnings
from ..objects import DeepFinderModel
from .protocol_base import (
    DeepFinderProtBase,
    coordinates_without_sampling_rate,
    gpu_ids,
    volumes_without_sampling_rate,
)

VALIDATION_FRACTION = 0
VALIDATION_SET = 1


class DeepFinderTrainOutputs(Enum):
    model = DeepFinderModel


class DeepFinderProtTrain(DeepFinderProtBase):
    """Train the DeepFinder 3D U-net to label every voxel with its particle class.

    Patches are taken around the annotated particles, classes are balanced in each
    batch, and the model with the best validation F1 is kept. A stopped or failed
    run continues from its last checkpoint (Continue), with its history.
    """

    _label = "train"
    _devStatus = BETA
    _possibleOutputs = DeepFinderTrainOutputs

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "inputLabelMaps",
            params.PointerParam,
            pointerClass="SetOfTomoMasks",
            label="Label maps",
            important=True,
            help="One label map per tomogram (e.g. from 'generate targets'): 0 is "
            "background, 1, 2, ... the classes. Each is read with its tomogram.",
        )
        self._defineClassParams(form, label="Particles (the patch centres, one set per class)")
        form.addParam(
            "validation",
            params.EnumParam,
            default=VALIDATION_FRACTION,
            choices=["a fraction of the particles", "other tomograms"],
            display=params.EnumParam.DISPLAY_HLIST,
            label="Validate on",
            help="The validation score picks the best model. Held-out tomograms give the more honest score.",
        )
        form.addParam(
            "validationFraction",
            params.FloatParam,
            default=0.2,
            condition=f"validation == {VALIDATION_FRACTION}",
            validators=[params.Range(0.05, 0.5)],
            label="Fraction held out",
            help="Fraction of the particles of each class kept for validation.",
        )
        form.addParam(
            "validationLabelMaps",
            params.PointerParam,
            pointerClass="SetOfTomoMasks",
            condition=f"validation == {VALIDATION_SET}",
            allowsNull=True,
            label="Validation label maps",
            help="Label maps of tomograms not used for training; the particles of "
            "those tomograms are taken from the input coordinates.",
        )
        form.addParam(
            "initialModel",
            params.PointerParam,
            pointerClass="DeepFinderModel",
            allowsNull=True,
            label="Start from a model (optional)",
            help="Fine-tune a trained model: it must have the same classes.",
        )
        form.addSection(label="Training")
        form.addParam(
            "patchSize",
            params.IntParam,
            default=48,
            validators=[params.GT(0)],
            label="Patch size (px)",
            help="Edge of the cubic training patches, a multiple of 4, about 1.5 to 3 "
            "times the largest particle diameter (the paper used 56). Smaller patches "
            "give more steps in the same time: on 2x-binned SHREC'19-like data 16 "
            "learnt the most in 30 CPU-minutes, ahead of 24, 32 and 48. Keep the "
            "random shift below half the patch.",
        )
        form.addParam(
            "batchSize",
            params.IntParam,
            default=8,
            validators=[params.GT(0)],
            label="Batch size",
            help="Patches per step (paper: 25 on a GPU). With class balancing, at least "
            "the number of particle classes, so that every batch holds each class.",
        )
        form.addParam("epochs", params.IntParam, default=30, validators=[params.GT(0)], label="Epochs")
        form.addParam(
            "stepsPerEpoch",
            params.IntParam,
            default=50,
            validators=[params.GT(0)],
            label="Steps per epoch",
            help="Batches per epoch (paper: 100).",
        )
        form.addParam(
            "validationSteps",
            params.IntParam,
            default=10,
            validators=[params.GT(0)],
            label="Validation batches per epoch",
        )
        form.addParam(
            "loss",
            params.EnumParam,
            default=LOSSES.index("dice_cross_entropy"),
            choices=list(LOSSES),
            display=params.EnumParam.DISPLAY_HLIST,
            label="Loss",
            help="dice: the paper's, best for small particles but slow to start; "
            "cross_entropy: categorical; dice_cross_entropy: their sum, learns "
            "every class early and tolerates a learning rate of 1e-3.",
        )
        form.addParam(
            "learningRate",
            params.FloatParam,
            default=1e-4,
            validators=[params.GT(0)],
            expertLevel=params.LEVEL_ADVANCED,
            label="Learning rate (Adam)",
            help="The paper's 1e-4 is safe with every loss. With dice_cross_entropy, 1e-3 "
            "learns several times faster in short runs (what the demo uses).",
        )
        form.addParam(
            "finalLearningRate",
            params.FloatParam,
            default=0,
            validators=[params.GE(0)],
            expertLevel=params.LEVEL_ADVANCED,
            label="Final learning rate",
            help="The learning rate decays geometrically to this value by the last "
            "epoch: large steps early, fine ones at the end. 0 keeps it constant.",
        )
        form.addParam(
            "bootstrap",
            params.BooleanParam,
            default=True,
            expertLevel=params.LEVEL_ADVANCED,
            label="Balance classes (bootstrap)?",
            help="Each batch holds the particle classes in equal numbers.",
        )
        form.addParam(
            "shiftVoxels",
            params.IntParam,
            default=13,
            validators=[params.GE(0)],
            expertLevel=params.LEVEL_ADVANCED,
            label="Random shift (px)",
            help="Patch centres move by up to this many pixels from the particle.",
        )
        form.addParam(
            "seed", params.IntParam, default=0, expertLevel=params.LEVEL_ADVANCED, label="Random seed"
        )
        form.addHidden(
            params.USE_GPU,
            params.BooleanParam,
            default=True,
            label="Use GPU?",
            help="Uses a GPU when TensorFlow sees one.",
        )
        form.addHidden(params.GPU_LIST, params.StringParam, default="0", label="GPU IDs")

    # ----------------------------------------------------------------- steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.trainStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep)

    def trainStep(self):
        os.environ.update(Plugin.getEnviron(gpu_ids(self)))
        from ..core.train import train  # TensorFlow loads here, after the GPU choice

        train_maps, validation_maps = self._labelMapFiles()
        particles = self._particleTable(self.inputLabelMaps.get().getSamplingRate())
        by_tomo = lambda maps: [particles.of_tomogram(tsId) for tsId in maps]  # noqa: E731
        initial = self.initialModel.get()
        train(
            tomograms=[tomo for tomo, _ in train_maps.values()],
            label_maps=[labels for _, labels in train_maps.values()],
            particles=by_tomo(train_maps),
            out_dir=self._trainingDir(),
            n_classes=len(self._allClassNames()),
            validation_tomograms=[tomo for tomo, _ in validation_maps.values()],
            validation_label_maps=[labels for _, labels in validation_maps.values()],
            validation_particles=by_tomo(validation_maps),
            validation_fraction=self.validationFraction.get() if not validation_maps else 0.0,
            patch_size=self.patchSize.get(),
            batch_size=self.batchSize.get(),
            epochs=self.epochs.get(),
            steps_per_epoch=self.stepsPerEpoch.get(),
            validation_steps=self.validationSteps.get(),
            loss=LOSSES[self.loss.get()],
            learning_rate=self.learningRate.get(),
            final_learning_rate=self.finalLearningRate.get() or None,
            bootstrap=self.bootstrap.get(),
            shift_voxels=self.shiftVoxels.get(),
            initial_weights=initial.getWeightsFile() if initial else None,
            resume=True,
            class_names=self._allClassNames(),
            voxel_size=self.inputLabelMaps.get().getSamplingRate(),
            seed=self.seed.get(),
            on_epoch_end=self._plotLearningCurves,
            precision=Plugin.getVar(DEEPFINDER_PRECISION),
        )

    def createOutputStep(self):
        model = DeepFinderModel(
            weightsFile=self._getExtraPath("training", "best.weights.h5"),
            classNames=self._allClassNames(),
            patchSize=self.patchSize.get(),
            samplingRate=self.inputLabelMaps.get().getSamplingRate(),
            historyFile=self._historyFile(),
        )
        self._defineOutputs(**{DeepFinderTrainOutputs.model.name: model})
        self._defineSourceRelation(self.inputLabelMaps, model)

    # ----------------------------------------------------------------- helpers
    def _trainingDir(self) -> str:
        return self._getExtraPath("training")

    def _historyFile(self) -> str:
        return self._getExtraPath("training", "history.json")

    def _plotLearningCurves(self, epoch: int, row: dict):
        """Redraw extra/learning_curves.png after every epoch, to follow a running training."""
        from ..figures.pictures import training_page, write_png

        write_png(
            self._getExtraPath("learning_curves.png"),
            training_page(self._historyFile(), self._allClassNames()),
        )

    def _allClassNames(self) -> list[str]:
        return get_class_names(self.inputLabelMaps.get()) or self._classNamesList()

    def _labelMapFiles(self) -> tuple[dict, dict]:
        """{tsId: (tomogram file, label map file)} for training and validation."""

        def files(label_maps):
            return {
                tsId: (mask.getVolName(), mask.getFileName())
                for tsId, mask in tomograms_by_tsid(label_maps).items()
            }

        validation = files(self.validationLabelMaps.get()) if self.validation.get() == VALIDATION_SET else {}
        training = {
            tsId: pair for tsId, pair in files(self.inputLabelMaps.get()).items() if tsId not in validation
        }
        return training, validation

    # ----------------------------------------------------------------- info
    def _validate(self):
        errors = self._validateClasses() + Plugin.precisionErrors()
        patch = self.patchSize.get()
        if patch % 4:
            errors.append(
                f"Patch size {patch} is not a multiple of 4 (the U-net pools twice): "
                f"use {patch // 4 * 4 or 4} or {patch // 4 * 4 + 4}."
            )
        label_maps = self.inputLabelMaps.get()
        errors += volumes_without_sampling_rate(label_maps, "label maps")
        errors += coordinates_without_sampling_rate(self._coordinateSets())
        n_classes = len(self._allClassNames())
        named = get_class_names(label_maps)
        if named and len(named) - 1 < self._numberOfClasses():
            errors.append(
                f"The label maps know {len(named) - 1} classes but {self._numberOfClasses()} "
                "particle classes are given: use the coordinates the targets were made from."
            )
        initial = self.initialModel.get()
        if initial and initial.getNumberOfClasses() != n_classes:
            errors.append(
                f"The starting model has {initial.getNumberOfClasses()} classes "
                f"({class_table(initial.getClassNames())}); the data have {n_classes} "
                "(background included): pick a model trained on the same classes."
            )
        if self.validation.get() == VALIDATION_SET:
            if not self.validationLabelMaps.get():
                errors.append("Choose the validation label maps, or validate on a fraction.")
            elif not self._labelMapFiles()[0]:
                errors.append("Every tomogram is in the validation set: keep some for training.")
        return errors

    def _warnings(self):
        return setting_warnings(
            self._numberOfClasses(),
            self.batchSize.get(),
            self.patchSize.get(),
            self.shiftVoxels.get(),
            self.bootstrap.get(),
        )

    def _summary(self):
        summary = [f"Classes: {class_table(self._allClassNames())}"]
        if os.path.exists(self._historyFile()):
            with open(self._historyFile()) as handle:
                rows = json.load(handle)
            if rows:
                best = max(rows, key=lambda row: row.get("val_mean_f1", -row["train_loss"]))
                summary.append(
                    f"{len(rows)} of {self.epochs.get()} epochs done; best epoch "
                    f"{best['epoch']} (validation mean F1 "
                    f"{best.get('val_mean_f1', float('nan')):.3f})."
                )
        return summary

    def _methods(self):
        return [
            f"A DeepFinder 3D U-net [Moebel2021] was trained on {self.patchSize.get()}^3 "
            f"patches ({LOSSES[self.loss.get()]} loss, batch {self.batchSize.get()}, "
            f"{self.epochs.get()} epochs of {self.stepsPerEpoch.get()} steps)."
        ]

    def _citations(self):
        return ["Moebel2021"]
