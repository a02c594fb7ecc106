"""Train the DeepFinder U-net on label maps."""

from __future__ import annotations

import json
import os
from enum import Enum

import pyworkflow.protocol.params as params
from pyworkflow.constants import BETA
from tomo.objects import Coordinate3D

from .. import Plugin
from ..constants import DEEPFINDER_PRECISION
from ..convert import class_table, coordinates_to_table, get_class_names, tomograms_by_tsid
from ..core.particles import ParticleTable
from ..core.settings import BINNINGS, LOSSES, ROTATIONS, TrainingSettings, default_of
from ..core.tables import csv as particle_csv
from ..objects import DeepFinderModel
from .protocol_base import (
    DeepFinderEngineProtocol,
    DeepFinderProtBase,
    add_setting_param,
    coordinates_without_sampling_rate,
    form_settings,
    run_engine,
    settings_arguments,
    settings_errors,
    volumes_without_sampling_rate,
)

VALIDATION_FRACTION = 0
VALIDATION_SET = 1

#: The form parameter of each training setting (precision is the Scipion variable DEEPFINDER_PRECISION).
FORM_PARAMS = {
    "patch_size": "patchSize",
    "batch_size": "batchSize",
    "epochs": "epochs",
    "steps_per_epoch": "stepsPerEpoch",
    "validation_steps": "validationSteps",
    "loss": "loss",
    "learning_rate": "learningRate",
    "final_learning_rate": "finalLearningRate",
    "bootstrap": "bootstrap",
    "shift_voxels": "shiftVoxels",
    "rotations": "rotations",
    "added_noise": "addedNoise",
    "binning": "binning",
    "seed": "seed",
}


class DeepFinderTrainOutputs(Enum):
    model = DeepFinderModel


class DeepFinderProtTrain(DeepFinderProtBase, DeepFinderEngineProtocol):
    """Train the DeepFinder 3D U-net to label every voxel with its particle class.

    Patches are taken around the annotated particles, classes are balanced in each
    batch, and the model with the best validation F1 is kept. A stopped or failed
    run continues from its last checkpoint (Continue), with its history. Training
    runs the ``deepfinder train`` command as a process of its own, on all the GPUs
    of the run's GPU list.
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
            "backgroundCoordinates",
            params.MultiPointerParam,
            pointerClass="SetOfCoordinates3D",
            allowsNull=True,
            label="Not particles (optional)",
            help="Places the network should learn are no particle of any class, e.g. the rejected "
            "picks of 'review picks'. Training patches are centred there too, labelled as in the "
            "label maps (background where no particle is). Patches centred on particles seldom reach "
            "a false positive far from every particle: without these, leaving a rejected pick out "
            "of the targets teaches the network nothing. Points of tomograms without a label map "
            "are not used.",
        )
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
            help="Fine-tune a trained model: it must have the same classes. Also the way to start a "
            "full-size model from the coarse model it will be paired with at segmentation (the same "
            "classes trained with Binning 2; segment form: Coarse model).",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "binning",
            params.EnumParam,
            default=BINNINGS.index(default_of(TrainingSettings, "binning")),
            choices=[str(binning) for binning in BINNINGS],
            display=params.EnumParam.DISPLAY_HLIST,
            label="Binning",
        )
        form.addSection(label="Training")
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "patch_size",
            params.IntParam,
            validators=[params.GT(0)],
            label="Patch size (px)",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "batch_size",
            params.IntParam,
            validators=[params.GT(0)],
            label="Batch size",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "epochs",
            params.IntParam,
            validators=[params.GT(0)],
            label="Epochs",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "steps_per_epoch",
            params.IntParam,
            validators=[params.GT(0)],
            label="Steps per epoch",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "validation_steps",
            params.IntParam,
            validators=[params.GT(0)],
            label="Validation batches per epoch",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "loss",
            params.EnumParam,
            default=LOSSES.index(default_of(TrainingSettings, "loss")),
            choices=list(LOSSES),
            display=params.EnumParam.DISPLAY_HLIST,
            label="Loss",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "learning_rate",
            params.FloatParam,
            validators=[params.GT(0)],
            expertLevel=params.LEVEL_ADVANCED,
            label="Learning rate (Adam)",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "final_learning_rate",
            params.FloatParam,
            default=default_of(TrainingSettings, "final_learning_rate")
            or 0,  # 0 stands for None: a constant step size
            validators=[params.GE(0)],
            expertLevel=params.LEVEL_ADVANCED,
            label="Final learning rate",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "bootstrap",
            params.BooleanParam,
            expertLevel=params.LEVEL_ADVANCED,
            label="Balance classes (bootstrap)?",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "shift_voxels",
            params.IntParam,
            validators=[params.GE(0)],
            expertLevel=params.LEVEL_ADVANCED,
            label="Random shift (px)",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "rotations",
            params.EnumParam,
            default=ROTATIONS.index(default_of(TrainingSettings, "rotations")),
            choices=list(ROTATIONS),
            display=params.EnumParam.DISPLAY_HLIST,
            expertLevel=params.LEVEL_ADVANCED,
            label="Patch rotations",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "added_noise",
            params.FloatParam,
            validators=[params.GE(0)],
            expertLevel=params.LEVEL_ADVANCED,
            label="Added noise (std)",
        )
        add_setting_param(
            form,
            TrainingSettings,
            FORM_PARAMS,
            "seed",
            params.IntParam,
            expertLevel=params.LEVEL_ADVANCED,
            label="Random seed",
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
        """Run ``deepfinder train`` on the label maps and the particle tables it writes to extra/.

        Continue finds the checkpoint of the stopped run in extra/training and resumes it.
        """
        train_maps, validation_maps = self._labelMapFiles()
        voxel_size = self.inputLabelMaps.get().getSamplingRate()
        particles = ParticleTable.concat([self._particleTable(voxel_size), self._backgroundTable(voxel_size)])
        training = self._tomogramArguments(train_maps, particles, "--tomograms", "--labels", "--particles")
        if not training:
            raise ValueError(
                f"No input particle belongs to the training tomograms ({', '.join(train_maps)}): "
                "give the coordinates of these tomograms"
            )
        arguments = [
            *training,
            "--classes",
            len(self._allClassNames()),
            "--class-names",
            *self._allClassNames(),
            "--voxel-size",
            voxel_size,
            "--out",
            self._trainingDir(),
            *settings_arguments(self, "train", self._settings()),
        ]
        validation = self._tomogramArguments(
            validation_maps, particles, "--val-tomograms", "--val-labels", "--val-particles"
        )
        if validation:
            arguments += validation
        elif not validation_maps:
            arguments += ["--val-fraction", self.validationFraction.get()]
        initial = self.initialModel.get()
        if initial:
            arguments += ["--initial-weights", initial.getWeightsFile()]
        run_engine(
            self,
            "train",
            arguments,
            outputs=[self._bestWeightsFile(), self._historyFile()],
            subject="Training",
            uses_gpu=True,
        )

    def createOutputStep(self):
        model = DeepFinderModel(
            weightsFile=self._bestWeightsFile(),
            classNames=self._allClassNames(),
            patchSize=self.patchSize.get(),
            samplingRate=self.inputLabelMaps.get().getSamplingRate() * self._settings().binning,
            historyFile=self._historyFile(),
        )
        self._defineOutputs(**{DeepFinderTrainOutputs.model.name: model})
        self._defineSourceRelation(self.inputLabelMaps, model)
        self._plotLearningCurves()

    # ----------------------------------------------------------------- helpers
    def _settings(self) -> TrainingSettings:
        """The training settings of the form (and the Scipion variable of the precision)."""
        return form_settings(
            self,
            TrainingSettings,
            FORM_PARAMS,
            loss=LOSSES[self.loss.get()],
            rotations=ROTATIONS[self.rotations.get()],
            binning=BINNINGS[self.binning.get()],
            final_learning_rate=self.finalLearningRate.get() or None,
            precision=Plugin.getVar(DEEPFINDER_PRECISION),
        )

    def _backgroundTable(self, sampling_rate: float) -> ParticleTable:
        """The 'Not particles' points in voxels at ``sampling_rate``, as class 0 (background points)."""
        return ParticleTable.concat(
            [
                coordinates_to_table(pointer.get(), sampling_rate, class_id=0)
                for pointer in self.backgroundCoordinates
            ]
        )

    def _trainingDir(self) -> str:
        return self._getExtraPath("training")

    def _bestWeightsFile(self) -> str:
        return self._getExtraPath("training", "best.weights.h5")

    def _historyFile(self) -> str:
        return self._getExtraPath("training", "history.json")

    def _tomogramArguments(self, label_maps: dict, particles, tomograms, labels, tables) -> list[str]:
        """The options (named ``tomograms``, ``labels``, ``tables``) giving the engine each tomogram
        of ``label_maps`` ({tsId: (tomogram, label map)}) that has particles, its label map and a
        table of its particles, written to extra/particles/<tsId>.csv (in voxels); none if no
        tomogram has particles."""
        os.makedirs(self._getExtraPath("particles"), exist_ok=True)
        # Patches are centred on particles: a tomogram without any adds nothing.
        with_particles = {tsId: pair for tsId, pair in label_maps.items() if len(particles.of_tomogram(tsId))}
        files = {tsId: self._getExtraPath("particles", f"{tsId}.csv") for tsId in with_particles}
        for tsId, path in files.items():
            particle_csv.write(path, particles.of_tomogram(tsId))
        if not files:
            return []
        return [
            tomograms,
            *(tomogram for tomogram, _ in with_particles.values()),
            labels,
            *(label_map for _, label_map in with_particles.values()),
            tables,
            *files.values(),
        ]

    def _plotLearningCurves(self):
        """Draw extra/learning_curves.png. A running training is followed in the learning curves
        viewer, which re-reads the history as it grows."""
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
        # The settings' check names a wrong precision too, but not as the Scipion variable it is.
        errors = self._validateClasses() + (
            Plugin.precisionErrors() or settings_errors(self, self._settings(), FORM_PARAMS)
        )
        label_maps = self.inputLabelMaps.get()
        errors += volumes_without_sampling_rate(label_maps, "label maps")
        background = [pointer.get() for pointer in self.backgroundCoordinates]
        errors += coordinates_without_sampling_rate(self._coordinateSets() + background)
        errors += self._backgroundErrors(background)
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

    def _backgroundErrors(self, background: list) -> list[str]:
        """An error for each 'Not particles' set none of whose points lies in a label map's tomogram."""
        label_maps = set(tomograms_by_tsid(self.inputLabelMaps.get())) if self.inputLabelMaps.get() else set()
        return [
            f"Not particles: {coordinates.getNameId()} has no point in the tomograms of the label maps "
            f"({', '.join(sorted(label_maps))}): give the rejected picks of these tomograms."
            for coordinates in background
            if label_maps and not set(coordinates.getUniqueValues(Coordinate3D.TOMO_ID_ATTR)) & label_maps
        ]

    def _warnings(self):
        return self._settings().warnings(self._numberOfClasses())

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
        binned = " of the tomograms binned by 2" if self._settings().binning == 2 else ""
        return [
            f"A DeepFinder 3D U-net [Moebel2021] was trained on {self.patchSize.get()}^3 "
            f"patches{binned} ({LOSSES[self.loss.get()]} loss, batch {self.batchSize.get()}, "
            f"{self.epochs.get()} epochs of {self.stepsPerEpoch.get()} steps)."
        ]

    def _citations(self):
        return ["Moebel2021"]
