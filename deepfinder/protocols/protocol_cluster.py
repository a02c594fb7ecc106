"""Turn label maps into particle coordinates, one set per class."""

from __future__ import annotations

import os
from enum import Enum

import pyworkflow.protocol.params as params
from pyworkflow.constants import BETA
from pyworkflow.protocol import STEPS_PARALLEL
from tomo.objects import SetOfCoordinates3D

from ..convert import (
    append_table,
    class_output_name,
    class_table,
    get_class_names,
    get_score_files,
    new_coordinate_set,
    tomogram_geometries,
    tomograms_by_tsid,
)
from ..core.particles import ParticleTable
from ..core.settings import (
    AUTOMATIC_THRESHOLD,
    ClusterSettings,
    SettingError,
    default_of,
    help_of,
    per_class,
    split_values,
)
from ..core.tables import csv as particle_csv
from ..core.tables import write_table
from .protocol_base import (
    DeepFinderEngineProtocol,
    add_masks_param,
    mask_arguments,
    mask_errors,
    run_engine,
    settings_arguments,
)
from .streaming import TomogramStreaming, record_done

#: Choices of the "Score threshold" field.
THRESHOLD_NONE, THRESHOLD_GIVEN, THRESHOLD_AUTOMATIC, THRESHOLD_EVALUATION = range(4)


class DeepFinderClusterOutputs(Enum):
    coordinates = SetOfCoordinates3D


class DeepFinderProtCluster(TomogramStreaming, DeepFinderEngineProtocol):
    """Find particles in DeepFinder label maps: one coordinate per particle, with its class and score.

    Outputs one coordinate set per class (named after the class, ready for
    extraction and subtomogram averaging) and one set with all classes (groupId =
    class). The score is the particle's mean class probability when score maps
    were kept, else its size in voxels. Label maps and tomograms may still be
    arriving (open sets): each tomogram is clustered when both are there, the
    coordinate sets grow, and they close when the inputs do.
    """

    _label = "cluster"
    _devStatus = BETA
    _possibleOutputs = DeepFinderClusterOutputs
    stepsExecutionMode = STEPS_PARALLEL
    _streamedInputs = ("inputLabelMaps", "inputTomograms")
    _doneOutputName = DeepFinderClusterOutputs.coordinates.name

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "inputTomograms",
            params.PointerParam,
            pointerClass="SetOfTomograms",
            label="Tomograms",
            important=True,
            help="The tomograms the coordinates will refer to (for extraction).",
        )
        form.addParam(
            "inputLabelMaps",
            params.PointerParam,
            pointerClass="SetOfTomoMasks",
            label="Label maps",
            important=True,
            help="DeepFinder segmentations of those tomograms (same tsIds).",
        )
        add_masks_param(form, "only the particles whose centre lies in its mask are kept")
        form.addSection(label="Clustering")
        form.addParam(
            "radii",
            params.StringParam,
            default="",
            label="Particle radius per class (Å)",
            help="One radius in Å per class, comma-separated in class order, or one for "
            "all. Sets the mean-shift bandwidth and the box size.",
        )
        form.addParam(
            "minSizes",
            params.StringParam,
            default="",
            label="Minimum cluster size per class (voxels)",
            help="Clusters smaller than this are discarded as false positives. One value "
            "per class or one for all; 0 keeps all. Empty: "
            f"{default_of(ClusterSettings, 'min_size_fraction')} of a ball of the class radius, "
            "which drops segmentation specks and fragments.",
        )
        form.addParam(
            "scoreThreshold",
            params.EnumParam,
            default=THRESHOLD_NONE,
            choices=["none", "given per class", "automatic", "from an evaluation"],
            label="Score threshold",
            help="Drop picks scoring below a threshold per class (the picks kept keep their "
            "scores; the summary says how many each class lost). The score is the mean class "
            "probability when the segmentation kept score maps, else the cluster size in voxels. "
            "Given: the thresholds below. Automatic: per class and tomogram, the scores are split "
            "into two populations (Otsu's cut; sizes on a log scale) when a mixture of two "
            "Gaussians describes them better than one, else nothing is dropped; "
            "extra/<tsId>_scores.png shows the fit. From an evaluation: the threshold of best F1 "
            "of each class in an 'evaluate picking' run on annotated tomograms.",
        )
        form.addParam(
            "thresholds",
            params.StringParam,
            default="",
            condition=f"scoreThreshold == {THRESHOLD_GIVEN}",
            label="Threshold per class",
            help="One score for all classes, or one per class, comma-separated in class order: "
            "a probability (0-1) with score maps, else a cluster size in voxels.",
        )
        form.addParam(
            "thresholdEvaluation",
            params.PointerParam,
            pointerClass="DeepFinderProtEvaluate",
            allowsNull=True,
            condition=f"scoreThreshold == {THRESHOLD_EVALUATION}",
            label="Evaluation",
            help="A finished DeepFinder 'evaluate picking' run of picks of the same classes "
            "(e.g. of this protocol run without a threshold on annotated tomograms).",
        )
        form.addParam(
            "boxScale",
            params.FloatParam,
            default=default_of(ClusterSettings, "box_scale"),
            expertLevel=params.LEVEL_ADVANCED,
            label="Box size / particle radius",
            help=help_of(ClusterSettings, "box_scale"),
        )
        form.addParallelSection(threads=1, mpi=1)

    # ----------------------------------------------------------------- steps
    def clusterStep(self, tsId: str):
        from ..figures.pictures import HISTOGRAMS_SIZE, cluster_sizes_path, slices_page, write_png
        from ..figures.score_fits import threshold_page

        label_map = self._arrived("inputLabelMaps", tsId)
        tomogram = self._arrived("inputTomograms", tsId)
        with self._lock:  # step threads share the input sets' database connections
            threshold, cut = self._threshold(tsId)
            mask = mask_arguments(self.inputMasks.get(), tsId)
        particles_file = self._particlesFile(tsId)
        settings = ClusterSettings(
            radius=_pairs({c: r / label_map.getSamplingRate() for c, r in self._radiiA().items()}),
            min_size=_pairs(self._minSizes() or {}),
            threshold=threshold,
            box_scale=self.boxScale.get(),
        )
        score_files = get_score_files(label_map)
        arguments = ["--labels", label_map.getFileName()]
        if score_files:
            arguments += ["--score-maps", *_pairs(score_files)]
        arguments += ["--label-scale", label_map.getSamplingRate() / tomogram.getSamplingRate()]
        arguments += ["--tomo-id", tsId, "--sizes", cluster_sizes_path(particles_file)] + mask
        arguments += settings_arguments(self, f"{tsId}_cluster", settings)
        run_engine(
            self,
            "cluster",
            arguments + cut + ["--output", particles_file],
            outputs=[particles_file, cluster_sizes_path(particles_file)]
            + ([self._thresholdReport(tsId)] if cut else []),
            subject=f"Label map {tsId}",
        )
        particles = particle_csv.read(particles_file).particles
        if cut:
            write_png(
                self._getExtraPath(f"{tsId}_scores.png"),
                threshold_page(self._thresholdReport(tsId), self._classNames()),
                HISTOGRAMS_SIZE,
            )
        write_png(
            self._getExtraPath(f"{tsId}_picks.png"),
            slices_page(
                tomogram.getFileName(),
                self._classNames(),
                label_map.getFileName(),
                particles,
                self._radiiVoxels(),
                title=tsId,
            ),
        )

        self._appendParticles(tomogram, particles)

    _tomogramStep = clusterStep

    def _appendParticles(self, tomogram, particles: ParticleTable):
        """Add one tomogram's particles to the output sets (created, open, with the first tomogram)."""
        names = self._classNames()
        radii = self._radiiA()
        all_classes = DeepFinderClusterOutputs.coordinates.name
        per_set = {all_classes: particles}
        per_set.update({class_output_name(names[c]): particles.of_class(c) for c in range(1, len(names))})
        with self._lock:
            if not self.hasAttribute(all_classes):
                outputs = {all_classes: self._coordinateSet(all_classes, max(radii.values()))}
                for class_id in range(1, len(names)):
                    name = class_output_name(names[class_id])
                    outputs[name] = self._coordinateSet(name, radii[class_id])
                self._defineOutputs(**outputs)
                for output in outputs.values():
                    self._defineSourceRelation(self.inputLabelMaps, output)
            # The set recording the tomograms done is written last: a tomogram is redone
            # after a crash unless all its particles were stored.
            for name in sorted(per_set, key=lambda name: name == all_classes):
                output = getattr(self, name)
                output.enableAppend()
                append_table(output, per_set[name], {tomogram.getTsId(): tomogram})
                if name == all_classes:
                    record_done(output, tomogram.getTsId())
                output.write()
                self._store(output)

    def closeOutputStep(self):
        from ..figures.pictures import HISTOGRAMS_SIZE, clusters_page, write_png

        names = self._classNames()
        files = [self._particlesFile(tsId) for tsId in sorted(self._tsIdsInserted)]
        particles = ParticleTable.concat([particle_csv.read(path).particles for path in files])
        tomograms = self.inputTomograms.get()
        # Every pick for averaging in RELION 5 (centred on each tomogram, in Angstrom) and in Dynamo
        # (voxels of the tomograms, with the .doc table map of their names).
        for name in ("particles.star", "particles.tbl"):
            write_table(
                self._getExtraPath(name),
                particles,
                voxel_size=tomograms.getSamplingRate(),
                tomograms=tomogram_geometries(tomograms_by_tsid(tomograms)),
            )
        write_png(
            self._getExtraPath("cluster_histograms.png"),
            clusters_page(files, names, self._hasScoreMaps()),
            HISTOGRAMS_SIZE,
        )
        self._closeOutputSet()

    def _threshold(self, tsId: str) -> tuple[tuple[str, ...], list]:
        """The score threshold setting, and the command line's threshold files (none without a cut)."""
        choice = self.scoreThreshold.get()
        if choice == THRESHOLD_NONE:
            return (), []
        report = ["--threshold-report", self._thresholdReport(tsId)]
        if choice == THRESHOLD_GIVEN:
            return _pairs(self._thresholds()), report
        if choice == THRESHOLD_EVALUATION:
            return (), ["--thresholds-from", self.thresholdEvaluation.get().bestThresholdsFile(), *report]
        return (AUTOMATIC_THRESHOLD,), report

    # ----------------------------------------------------------------- helpers
    def _thresholdReport(self, tsId: str) -> str:
        return self._getExtraPath(f"{tsId}_threshold.json")

    def _thresholds(self) -> dict[int, float]:
        return self._perClass(self.thresholds.get(), "thresholds")

    def _coordinateSet(self, name, radius_A) -> SetOfCoordinates3D:
        """An empty, open output set of coordinates."""
        sampling = self.inputTomograms.get().getSamplingRate()
        coordinates = new_coordinate_set(
            self._getPath(),
            name,
            self.inputTomograms,
            sampling,
            int(round(self.boxScale.get() * radius_A / sampling)),
            ParticleTable.empty(),
        )
        coordinates.setStreamState(coordinates.STREAM_OPEN)
        return coordinates

    def _particlesFile(self, tsId: str) -> str:
        return self._getExtraPath(f"{tsId}_particles.csv")

    def _classNames(self) -> list[str]:
        names = get_class_names(self.inputLabelMaps.get())
        return names or ["background"] + [f"class{i}" for i in self._radiiA()]

    def _perClass(self, text: str | None, setting: str) -> dict[int, float]:
        """Per-class values of a form field: one for all classes, or one per class."""
        values = split_values(text)
        names = get_class_names(self.inputLabelMaps.get())
        return per_class(values, range(1, len(names) if names else len(values) + 1), setting)

    def _radiiA(self) -> dict[int, float]:
        return self._perClass(self.radii.get(), "radii")

    def _radiiVoxels(self) -> dict[int, float]:
        """Particle radius per class in voxels of the input tomograms."""
        sampling = self.inputTomograms.get().getSamplingRate()
        return {class_id: radius / sampling for class_id, radius in self._radiiA().items()}

    def _hasScoreMaps(self) -> bool:
        """Whether particle scores are mean class probabilities (else cluster sizes)."""
        return any(get_score_files(mask) for mask in self.inputLabelMaps.get().iterItems())

    def _minSizes(self) -> dict[int, int] | None:
        if not split_values(self.minSizes.get()):
            return None
        return {c: int(v) for c, v in self._perClass(self.minSizes.get(), "minSizes").items()}

    # ----------------------------------------------------------------- info
    def _validate(self):
        errors = []
        names = get_class_names(self.inputLabelMaps.get())
        n = len(names) - 1 if names else None
        try:
            radii = self._radiiA()
        except SettingError:
            radii = {}
        if not radii or min(radii.values()) <= 0:
            errors.append(
                f"Give one positive radius in Å, or one per class ({n or 'each'}), "
                f"comma-separated; got '{self.radii.get('')}'."
            )
        try:
            sizes_valid = min((self._minSizes() or {}).values(), default=0) >= 0
        except SettingError:
            sizes_valid = False
        if not sizes_valid:
            errors.append(f"Give one minimum size, or one per class ({n}), or leave it empty.")
        errors += self._validateThreshold(names)
        tomograms = tomograms_by_tsid(self.inputTomograms.get())
        label_maps = tomograms_by_tsid(self.inputLabelMaps.get())
        errors += mask_errors(self.inputMasks.get(), label_maps, "Label map")
        for tsId, label_map in label_maps.items():
            if tsId not in tomograms:
                errors.append(
                    f"Label map {tsId} has no tomogram of that tsId among the input "
                    "tomograms: pick the tomograms that were segmented."
                )
                continue
            scale = label_map.getSamplingRate() / tomograms[tsId].getSamplingRate()
            expected = [d / scale for d in tomograms[tsId].getDim()]
            # A 2x binned label map may be one voxel short of half the tomogram.
            if any(abs(a - b) > (scale > 1) for a, b in zip(label_map.getDim(), expected)):
                errors.append(
                    f"Label map {tsId} is {label_map.getDim()} voxels but its tomogram "
                    f"{tomograms[tsId].getDim()}: they must match."
                )
        return errors

    def _validateThreshold(self, names) -> list[str]:
        choice = self.scoreThreshold.get()
        if choice == THRESHOLD_GIVEN:
            try:
                thresholds = self._thresholds()
            except SettingError:
                thresholds = {}
            if not thresholds:
                n = len(names) - 1 if names else "each"
                return [
                    f"Give one score threshold, or one per class ({n}), comma-separated; "
                    f"got '{self.thresholds.get('')}'."
                ]
            if self._hasScoreMaps() and not all(0 <= t <= 1 for t in thresholds.values()):
                return [
                    "The scores are mean class probabilities (the label maps have score maps): "
                    f"give thresholds between 0 and 1, got '{self.thresholds.get()}'."
                ]
        if choice == THRESHOLD_EVALUATION:
            from ..core.errors import InputError
            from ..core.threshold import read_thresholds

            evaluation = self.thresholdEvaluation.get()
            if evaluation is None:
                return ["Choose the evaluation whose best thresholds to apply."]
            path = evaluation.bestThresholdsFile()
            if not os.path.exists(path):
                return [f"The evaluation {evaluation.getObjLabel()} has no best thresholds: run it first."]
            try:
                thresholds = read_thresholds(path)
            except InputError as error:
                return [str(error)]
            unknown = sorted(set(thresholds) - set(range(1, len(names)))) if names else []
            if unknown:
                return [
                    f"The evaluation {evaluation.getObjLabel()} has thresholds for class(es) {unknown} "
                    f"that the label maps lack ({class_table(names)}): evaluate picks of these classes."
                ]
        return []

    def _summary(self):
        names = get_class_names(self.inputLabelMaps.get()) or []
        summary = [f"Classes: {class_table(names)}"] if names else []
        lost = self._lostPerClass()
        for class_id, name in enumerate(names[1:], start=1):
            output = getattr(self, class_output_name(name), None)
            if output is not None:
                below = f", {lost.get(class_id, 0)} dropped below the score threshold" if lost else ""
                summary.append(f"{name}: {output.getSize()} particles{below}")
        return summary

    def _lostPerClass(self) -> dict[int, int]:
        """Picks each class lost to the score threshold, over the tomograms done (empty: no cut)."""
        from ..core.threshold import read_threshold_report

        lost = {}
        for tsId in tomograms_by_tsid(self.inputLabelMaps.get()):
            if os.path.exists(self._thresholdReport(tsId)):
                for class_id, n in read_threshold_report(self._thresholdReport(tsId)).lost.items():
                    lost[class_id] = lost.get(class_id, 0) + n
        return lost

    def _methods(self):
        inside = ", keeping those inside a mask of each tomogram" if self.inputMasks.get() is not None else ""
        methods = [
            f"Particles were located in DeepFinder label maps by mean-shift clustering [Moebel2021]{inside}."
        ]
        how = {
            THRESHOLD_GIVEN: f"below a given threshold per class ({self.thresholds.get()})",
            THRESHOLD_AUTOMATIC: "below a threshold per class and tomogram split off from the "
            "distribution of the picks' own scores",
            THRESHOLD_EVALUATION: "below the threshold of best F1 per class of an evaluation on annotated "
            "tomograms",
        }.get(self.scoreThreshold.get())
        if how:
            methods.append(f"Picks scoring {how} were dropped.")
        return methods

    def _citations(self):
        return ["Moebel2021"]


def _pairs(values: dict) -> tuple[str, ...]:
    """``CLASS:VALUE`` words of a per-class setting (none for no values)."""
    return tuple(f"{class_id}:{value}" for class_id, value in values.items())
