"""Label maps (training targets) from particle coordinates."""

from __future__ import annotations

from enum import Enum

import numpy as np
import pyworkflow.protocol.params as params
from pyworkflow.constants import BETA
from pyworkflow.protocol import STEPS_PARALLEL
from tomo.objects import Coordinate3D, SetOfTomoMasks

from ..convert import class_table, new_tomo_mask, set_class_names, tomograms_by_tsid, unique_values
from ..core import io, targets
from ..core.resample import resample_to_voxel_size
from ..core.settings import SettingError, TargetSettings, per_class, split_values
from ..core.steps.targets import make_targets
from .protocol_base import (
    DeepFinderProtBase,
    add_setting_param,
    coordinates_without_sampling_rate,
    form_settings,
    settings_errors,
    volumes_without_sampling_rate,
)

SPHERES = 0
SHAPES = 1

#: The form parameter of each target setting.
FORM_PARAMS = {"mask_threshold": "shapeThreshold"}


class DeepFinderTargetsOutputs(Enum):
    labelMaps = SetOfTomoMasks


class DeepFinderProtGenerateTargets(DeepFinderProtBase):
    """Paint a label map per tomogram from particle coordinates: the training targets of DeepFinder.

    Each class is painted as a sphere (cheap) or as its own shape (a mask rotated by each
    particle's orientation; much better for non-spherical particles). A segmentation
    such as membranes can be merged in as an extra class.
    """

    _label = "generate targets"
    _devStatus = BETA
    _possibleOutputs = DeepFinderTargetsOutputs
    stepsExecutionMode = STEPS_PARALLEL

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "inputTomograms",
            params.PointerParam,
            pointerClass="SetOfTomograms",
            label="Tomograms",
            important=True,
            help="The tomograms the coordinates were picked on.",
        )
        self._defineClassParams(form)
        form.addSection(label="Targets")
        form.addParam(
            "strategy",
            params.EnumParam,
            default=SPHERES,
            choices=["spheres", "shapes"],
            display=params.EnumParam.DISPLAY_HLIST,
            label="Strategy",
            help="spheres: a ball of the class radius at each particle.\n"
            "shapes: the class mask, rotated by each particle's orientation "
            "(needs oriented coordinates, e.g. from template matching or "
            "subtomogram averaging). Paper: F1 0.97 with shapes vs 0.13 with "
            "spheres for a ring-shaped particle.",
        )
        form.addParam(
            "radii",
            params.StringParam,
            default="",
            condition=f"strategy == {SPHERES}",
            label="Sphere radius per class (Å)",
            help="One radius in Å per class, comma-separated in class order "
            "(e.g. '120, 60'), or one radius for all. Half the particle diameter "
            "is a good choice.",
        )
        form.addParam(
            "radiusInPixels",
            params.BooleanParam,
            default=False,
            condition=f"strategy == {SPHERES}",
            label="Radii in pixels?",
            help="Give the radii in tomogram pixels instead of Å.",
        )
        form.addParam(
            "shapeVolumes",
            params.MultiPointerParam,
            pointerClass="Volume",
            condition=f"strategy == {SHAPES}",
            allowsNull=True,
            label="Shape per class",
            help="One volume per class, in class order: a binary mask or a "
            "subtomogram average (thresholded below). Resampled to the "
            "tomograms' sampling rate.",
        )
        add_setting_param(
            form,
            TargetSettings,
            FORM_PARAMS,
            "mask_threshold",
            params.FloatParam,
            condition=f"strategy == {SHAPES}",
            label="Shape threshold",
        )
        form.addParam(
            "extraLabelMaps",
            params.PointerParam,
            pointerClass="SetOfTomoMasks",
            allowsNull=True,
            expertLevel=params.LEVEL_ADVANCED,
            label="Extra segmentation (optional)",
            help="E.g. a membrane segmentation of the same tomograms (same tsIds and "
            "sizes): its non-zero voxels become one more class.",
        )
        form.addParam(
            "extraLabelName",
            params.StringParam,
            default="membrane",
            expertLevel=params.LEVEL_ADVANCED,
            label="Extra class name",
        )
        form.addParallelSection(threads=1, mpi=1)

    # ----------------------------------------------------------------- steps
    def _insertAllSteps(self):
        steps = [self._insertFunctionStep(self.targetsStep, tsId, prerequisites=[]) for tsId in self._tsIds()]
        self._insertFunctionStep(self.createOutputStep, prerequisites=steps)

    def targetsStep(self, tsId: str):
        tomogram = tomograms_by_tsid(self.inputTomograms.get())[tsId]
        volume = io.read_volume(tomogram.getFileName())
        particles = self._particleTable(tomogram.getSamplingRate()).of_tomogram(tsId)
        if self.strategy.get() == SPHERES:
            footprint = {"radius_voxels": self._radiiVoxels()}
        else:
            footprint = {"masks": self._shapeMasks()}
        labels = make_targets(
            volume.shape,
            particles,
            initial_labels=self._extraLabels(tsId, volume.shape),
            tomogram=f"tomogram {tsId}",
            **footprint,
        )
        io.write_volume(self._labelMapPath(tsId), labels, voxel_size=tomogram.getSamplingRate())
        from ..figures.pictures import slices_page, write_png  # matplotlib only when drawing

        radii = self._radiiVoxels() if self.strategy.get() == SPHERES else None
        write_png(
            self._getExtraPath(f"{tsId}_labels.png"),
            slices_page(
                tomogram.getFileName(),
                self._allClassNames(),
                self._labelMapPath(tsId),
                particles,
                radii,
                title=tsId,
            ),
        )

    def createOutputStep(self):
        tomograms = self.inputTomograms.get()
        label_maps = SetOfTomoMasks.create(self._getPath(), prefix="labelmaps")
        label_maps.copyInfo(tomograms)
        for tsId, tomogram in tomograms_by_tsid(tomograms).items():
            label_maps.append(new_tomo_mask(tomogram, self._labelMapPath(tsId)))
        set_class_names(label_maps, self._allClassNames())
        self._defineOutputs(**{DeepFinderTargetsOutputs.labelMaps.name: label_maps})
        self._defineSourceRelation(self.inputTomograms, label_maps)
        for pointer in self.inputCoordinates:
            self._defineSourceRelation(pointer, label_maps)

    # ----------------------------------------------------------------- helpers
    def _tsIds(self) -> list[str]:
        return [tomo.getTsId() for tomo in self.inputTomograms.get().iterItems()]

    def _labelMapPath(self, tsId: str) -> str:
        return self._getExtraPath(f"{tsId}_labels.mrc")

    def _allClassNames(self) -> list[str]:
        names = self._classNamesList()
        return names + [self.extraLabelName.get()] if self.extraLabelMaps.get() else names

    def _radiiVoxels(self) -> dict[int, float]:
        scale = 1.0 if self.radiusInPixels else 1.0 / self.inputTomograms.get().getSamplingRate()
        return {class_id: radius * scale for class_id, radius in self._radii().items()}

    def _radii(self) -> dict[int, float]:
        """Sphere radius of each class as given (Å or pixels)."""
        return per_class(split_values(self.radii.get()), range(1, self._numberOfClasses() + 1), "radii")

    def _shapeMasks(self) -> dict[int, np.ndarray]:
        sampling = self.inputTomograms.get().getSamplingRate()
        masks = {}
        for i, pointer in enumerate(self.shapeVolumes):
            volume = pointer.get()
            density = resample_to_voxel_size(
                io.read_volume(volume.getFileName(), mmap=False), volume.getSamplingRate(), sampling
            )
            masks[i + 1] = targets.mask_from_density(density, self._settings().mask_threshold)
        return masks

    def _settings(self) -> TargetSettings:
        return form_settings(self, TargetSettings, FORM_PARAMS)

    def _extraLabels(self, tsId: str, shape) -> np.ndarray | None:
        if not self.extraLabelMaps.get():
            return None
        extra = tomograms_by_tsid(self.extraLabelMaps.get())[tsId]
        segmentation = io.read_volume(extra.getFileName())
        if segmentation.shape != shape:
            raise ValueError(
                f"Extra segmentation of {tsId} is {segmentation.shape[::-1]} voxels, "
                f"its tomogram {shape[::-1]}"
            )
        extra_class = self._numberOfClasses() + 1
        return np.where(np.asarray(segmentation) > 0, extra_class, 0).astype(np.uint8)

    # ----------------------------------------------------------------- info
    def _validate(self):
        errors = self._validateClasses()
        errors += volumes_without_sampling_rate(self.inputTomograms.get(), "tomograms")
        errors += coordinates_without_sampling_rate(self._coordinateSets())
        tsIds = set(self._tsIds())
        for coords in self._coordinateSets():
            unknown = unique_values(coords, Coordinate3D.TOMO_ID_ATTR) - tsIds
            if unknown:
                errors.append(
                    f"{coords.getNameId()} has coordinates of tomograms that are not in the "
                    f"input tomograms ({', '.join(sorted(unknown)[:5])}): pick the "
                    "tomograms they were picked on."
                )
        n = self._numberOfClasses()
        if self.strategy.get() == SPHERES:
            try:
                radii = self._radii()
            except SettingError:
                radii = {}
            if set(radii) != set(range(1, n + 1)) or min(radii.values(), default=0) <= 0:
                errors.append(
                    f"Give one positive sphere radius, or {n} (one per class), "
                    f"comma-separated; got '{self.radii.get('')}'."
                )
        else:
            if len(self.shapeVolumes) != n:
                errors.append(
                    f"Give one shape volume per class: {n} classes, {len(self.shapeVolumes)} volumes."
                )
            errors += settings_errors(self, self._settings(), FORM_PARAMS)
        if self.extraLabelMaps.get():
            missing = tsIds - {mask.getTsId() for mask in self.extraLabelMaps.get().iterItems()}
            if missing:
                errors.append(f"The extra segmentation lacks tomograms {', '.join(sorted(missing)[:5])}.")
        return errors

    def _summary(self):
        summary = [f"Classes: {class_table(self._allClassNames())}"]
        strategy = "spheres" if self.strategy.get() == SPHERES else "shapes"
        summary.append(f"Targets painted as {strategy}.")
        if self.hasAttribute(DeepFinderTargetsOutputs.labelMaps.name):
            summary.append(f"{self.labelMaps.getSize()} label maps written.")
        return summary

    def _methods(self):
        strategy = "spheres" if self.strategy.get() == SPHERES else "rotated particle shapes"
        return [f"Training targets were generated with DeepFinder [Moebel2021] as {strategy}."]

    def _citations(self):
        return ["Moebel2021"]
