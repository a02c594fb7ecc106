"""Annotate particles by hand in linked orthoslices: training data for DeepFinder."""

from __future__ import annotations

import json
import os
from enum import Enum

import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol
from pyworkflow.constants import BETA
from tomo.objects import Coordinate3D, SetOfCoordinates3D

from ..convert import class_output_name, class_table, new_coordinate_set, tomograms_by_tsid, unique_values
from ..core import io
from ..core.annotation import ParticleClass
from ..core.particles import ParticleTable
from ..core.settings import ClusterSettings, SettingError, default_of, help_of, per_class, split_values
from ..core.tables import csv as particle_csv
from ..figures.orthoslices import default_colour
from .protocol_base import (
    CLASSES_PER_SET,
    add_classes_from_param,
    classes_table,
    group_id_errors,
    number_of_classes,
    volumes_without_sampling_rate,
)

CLASSES_FILE = "classes.json"


class DeepFinderAnnotateOutputs(Enum):
    annotatedCoordinates = SetOfCoordinates3D


class DeepFinderProtAnnotate(EMProtocol):
    """Pick particles of several classes by hand, in a window with linked XY, XZ and YZ slices.

    Click to add a particle of the current class; click to select, drag to move,
    right-click to delete, Ctrl+Z to undo. Existing coordinates (a previous
    annotation, another picker) are loaded for editing. Annotations are saved to
    the run folder as you go: run the protocol again with 'Continue' to go on
    annotating where you stopped. Outputs one coordinate set with all classes
    (groupId = class) and one set per class, named after it.
    """

    _label = "annotate"
    _devStatus = BETA
    _possibleOutputs = DeepFinderAnnotateOutputs
    #: The output set of every class (groupId = class).
    _allClassesOutput = DeepFinderAnnotateOutputs.annotatedCoordinates.name

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "inputTomograms",
            params.PointerParam,
            pointerClass="SetOfTomograms",
            label="Tomograms",
            important=True,
            help="The tomograms to annotate, one after the other in the window.",
        )
        form.addParam(
            "inputCoordinates",
            params.MultiPointerParam,
            pointerClass="SetOfCoordinates3D",
            allowsNull=True,
            label="Existing particles (optional)",
            help="Coordinates to start from, e.g. an earlier annotation or another "
            "picker's output. Used the first time the window opens; after that "
            "the annotations saved in this run are reloaded.",
        )
        add_classes_from_param(form)
        form.addParam(
            "classNames",
            params.StringParam,
            default="",
            label="Class names",
            help="Comma-separated, in class order, e.g. 'ribosome, proteasome'. More "
            "names than existing classes add classes to annotate. Empty: the "
            "names of the input sets, or 'class1'. Classes can also be added and "
            "renamed in the window.",
        )
        form.addParam(
            "radii",
            params.StringParam,
            default="",
            label="Particle radius per class (Å)",
            help="One radius in Å per class, comma-separated in class order, or one "
            "for all. Sets the circles drawn and the box size of the outputs.",
        )
        form.addParam(
            "boxScale",
            params.FloatParam,
            default=default_of(ClusterSettings, "box_scale"),
            expertLevel=params.LEVEL_ADVANCED,
            label="Box size / particle radius",
            help=help_of(ClusterSettings, "box_scale"),
        )

    # ----------------------------------------------------------------- steps
    def _insertAllSteps(self):
        self._insertFunctionStep(self.annotateStep, interactive=True)

    def annotateStep(self):
        from ..viewers.annotation_window import annotate

        sampling = self.inputTomograms.get().getSamplingRate()
        classes = self._savedClasses() or self._formClasses()
        particles = {}
        for tsId in tomograms_by_tsid(self.inputTomograms.get()):
            if os.path.exists(self._particlesFile(tsId)):
                particles[tsId] = particle_csv.read(self._particlesFile(tsId)).particles
            else:
                particles[tsId] = self._inputParticles(sampling).of_tomogram(tsId)
            self._saveAnnotation(tsId, particles[tsId], classes)
        tomograms = [
            (tsId, tomogram.getFileName())
            for tsId, tomogram in tomograms_by_tsid(self.inputTomograms.get()).items()
        ]
        annotate(tomograms, classes, particles, sampling, self._saveAnnotation, self.createOutputs)
        self.createOutputs()

    def createOutputs(self):
        """(Re)build the output sets from the annotation files of the run."""
        particles = self._annotatedParticles()
        classes = self._savedClasses()
        sampling = self.inputTomograms.get().getSamplingRate()
        tables = {self._allClassesOutput: particles, **self._otherOutputTables()}
        tables = {name: table for name, table in tables.items() if len(table)}
        if not tables:
            self.info("No particle annotated yet: no output.")
            return
        for _, output in self.iterOutputAttributes():
            # Saving again rewrites the same files: let go of the previous sets first.
            output.close()
        largest_radius_A = max(c.radius_voxels for c in classes) * sampling
        outputs = {name: self._coordinateSet(name, table, largest_radius_A) for name, table in tables.items()}
        for class_id, particle_class in enumerate(classes, start=1):
            of_class = particles.of_class(class_id)
            name = class_output_name(particle_class.name)
            if len(of_class):
                outputs[name] = self._coordinateSet(name, of_class, particle_class.radius_voxels * sampling)
        for name, output in list(self.iterOutputAttributes()):
            # A class renamed or emptied since the last save must not leave its old set behind.
            if name not in outputs:
                self.deleteOutput(output)
        self._defineOutputs(**outputs)
        for output in outputs.values():
            self._defineSourceRelation(self.inputTomograms, output)
        self._store()
        counts = ", ".join(f"{c.name}: {len(particles.of_class(i))}" for i, c in enumerate(classes, start=1))
        self.info(f"Saved {len(particles)} particles ({counts}).")

    def _otherOutputTables(self) -> dict[str, ParticleTable]:
        """Output sets besides the particles and their classes (a subclass's): their picks by name."""
        return {}

    # ----------------------------------------------------------------- files
    def _annotatedParticles(self) -> ParticleTable:
        """The particles of the output sets: those annotated in this run."""
        return ParticleTable.concat(
            [
                particle_csv.read(self._particlesFile(tsId)).particles
                for tsId in tomograms_by_tsid(self.inputTomograms.get())
                if os.path.exists(self._particlesFile(tsId))
            ]
        )

    def _particlesFile(self, tsId: str) -> str:
        return self._getExtraPath(f"{tsId}_particles.csv")

    def _saveAnnotation(self, tsId: str, particles: ParticleTable, classes: list[ParticleClass]):
        """Write one tomogram's particles and the class list: nothing is lost on a crash."""
        particle_csv.write(self._particlesFile(tsId), particles)
        self._saveClasses(classes)

    def _saveClasses(self, classes: list[ParticleClass]):
        sampling = self.inputTomograms.get().getSamplingRate()
        with io.atomic_output(self._getExtraPath(CLASSES_FILE)) as temporary, open(temporary, "w") as handle:
            json.dump(
                [
                    {"name": c.name, "colour": c.colour, "radius_A": c.radius_voxels * sampling}
                    for c in classes
                ],
                handle,
                indent=1,
            )

    def _savedClasses(self) -> list[ParticleClass]:
        path = self._getExtraPath(CLASSES_FILE)
        if not os.path.exists(path):
            return []
        sampling = self.inputTomograms.get().getSamplingRate()
        with open(path) as handle:
            return [
                ParticleClass(c["name"], c["colour"], c["radius_A"] / sampling) for c in json.load(handle)
            ]

    # ----------------------------------------------------------------- helpers
    def _inputParticles(self, sampling_rate: float) -> ParticleTable:
        if not len(self.inputCoordinates):
            return ParticleTable.empty()
        return classes_table(self.inputCoordinates, self.classesFrom.get(), sampling_rate)

    def _classNamesList(self) -> list[str]:
        """Class names from the form, then the input sets' names, then class1, class2..."""
        given = [name.strip() for name in self.classNames.get("").split(",") if name.strip()]
        n = max(len(given), number_of_classes(self.inputCoordinates, self.classesFrom.get()), 1)
        labels = (
            [
                (pointer.getObjValue().getObjLabel() or "").strip().replace(" ", "_")
                for pointer in self.inputCoordinates
            ]
            if self.classesFrom.get() == CLASSES_PER_SET
            else []
        )
        names = []
        for i in range(n):
            candidates = given[i : i + 1] + labels[i : i + 1] + [f"class{i + 1}"]
            names.append(next(name for name in candidates if name and name not in names))
        return names

    def _formClasses(self) -> list[ParticleClass]:
        names = self._classNamesList()
        radii = self._radiiA(len(names))
        sampling = self.inputTomograms.get().getSamplingRate()
        return [
            ParticleClass(name, default_colour(i), radii[i] / sampling)
            for i, name in enumerate(names, start=1)
        ]

    def _radiiA(self, n_classes: int) -> dict[int, float]:
        """Particle radius in Å of each of ``n_classes`` classes."""
        return per_class(split_values(self.radii.get()), range(1, n_classes + 1), "radii")

    def _coordinateSet(self, name: str, particles, radius_A) -> SetOfCoordinates3D:
        """The output set ``name``, in its own file ``name.sqlite`` of the run folder."""
        sampling = self.inputTomograms.get().getSamplingRate()
        return new_coordinate_set(
            self._getPath(),
            name,
            self.inputTomograms,
            sampling,
            int(round(self.boxScale.get() * radius_A / sampling)),
            particles,
        )

    # ----------------------------------------------------------------- info
    def _validate(self):
        tomograms = self.inputTomograms.get()
        errors = volumes_without_sampling_rate(tomograms, "tomograms")
        n = len(self._classNamesList())
        try:
            radii = self._radiiA(n)
        except SettingError:
            radii = {}
        if not radii or min(radii.values()) <= 0:
            errors.append(
                f"Give one positive radius in Å, or {n} (one per class: "
                f"{', '.join(self._classNamesList())}), comma-separated; "
                f"got '{self.radii.get('')}'."
            )
        tsIds = set(tomograms_by_tsid(tomograms))
        for pointer in self.inputCoordinates:
            coords = pointer.get()
            unknown = unique_values(coords, Coordinate3D.TOMO_ID_ATTR) - tsIds
            if unknown:
                errors.append(
                    f"{coords.getNameId()} has coordinates of tomograms that are not in "
                    f"the input tomograms ({', '.join(sorted(unknown)[:5])}): pick the "
                    "tomograms they were picked on."
                )
        return errors + group_id_errors(self.inputCoordinates, self.classesFrom.get())

    def _summary(self):
        classes = self._savedClasses()
        if not classes:
            return ["Not annotated yet: the window opens when the protocol runs."]
        summary = [f"Classes: {class_table(['background'] + [c.name for c in classes])}"]
        for particle_class in classes:
            output = getattr(self, class_output_name(particle_class.name), None)
            if output is not None:
                summary.append(f"{particle_class.name}: {output.getSize()} particles")
        summary.append("Run again with 'Continue' to go on annotating.")
        return summary

    def _methods(self):
        return [
            "Particles were annotated by hand in orthoslices with the DeepFinder "
            "annotation tool [Moebel2021]."
        ]

    def _citations(self):
        return ["Moebel2021"]
