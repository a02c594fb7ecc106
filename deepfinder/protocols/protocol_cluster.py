"""Turn label maps into particle coordinates, one set per class."""

from __future__ import annotations

from enum import Enum

import pyworkflow.protocol.params as params
from pyworkflow.constants import BETA
from pyworkflow.protocol import STEPS_PARALLEL
from tomo.objects import SetOfCoordinates3D

from ..convert import (
    class_output_name,
    class_table,
    get_class_names,
    get_score_files,
    new_coordinate_set,
    tomograms_by_tsid,
)
from ..core import io
from ..core.particles import ParticleTable
from ..core.settings import ClusterSettings, SettingError, default_of, per_class, split_values
from .protocol_base import DeepFinderEngineProtocol, run_engine


class DeepFinderClusterOutputs(Enum):
    coordinates = SetOfCoordinates3D


class DeepFinderProtCluster(DeepFinderEngineProtocol):
    """Find particles in DeepFinder label maps: one coordinate per particle, with its class and score.

    Outputs one coordinate set per class (named after the class, ready for
    extraction and subtomogram averaging) and one set with all classes (groupId =
    class). The score is the particle's mean class probability when score maps
    were kept, else its size in voxels.
    """

    _label = "cluster"
    _devStatus = BETA
    _possibleOutputs = DeepFinderClusterOutputs
    stepsExecutionMode = STEPS_PARALLEL

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
            f"{default_of(ClusterSettings, 'min_size_fraction')} of a ball of the class radius "
            "(see benchmarks/RESULTS.md).",
        )
        form.addParam(
            "boxScale",
            params.FloatParam,
            default=2.5,
            expertLevel=params.LEVEL_ADVANCED,
            label="Box size / particle radius",
            help="The box size of the output coordinates is this times the radius "
            "(2.5: the particle diameter plus a margin).",
        )
        form.addParallelSection(threads=1, mpi=1)

    # ----------------------------------------------------------------- steps
    def _insertAllSteps(self):
        steps = [
            self._insertFunctionStep(self.clusterStep, tsId, prerequisites=[])
            for tsId in tomograms_by_tsid(self.inputLabelMaps.get())
        ]
        self._insertFunctionStep(self.createOutputStep, prerequisites=steps)

    def clusterStep(self, tsId: str):
        from ..figures.pictures import cluster_sizes_path, slices_page, write_png

        with self._lock:  # step threads share the input sets' database connections
            label_map = tomograms_by_tsid(self.inputLabelMaps.get())[tsId]
            tomogram = tomograms_by_tsid(self.inputTomograms.get())[tsId]
        particles_file = self._particlesFile(tsId)
        radii = {c: r / label_map.getSamplingRate() for c, r in self._radiiA().items()}
        min_sizes, score_files = self._minSizes(), get_score_files(label_map)
        arguments = ["--labels", label_map.getFileName(), "--radius", *_pairs(radii)]
        if min_sizes:
            arguments += ["--min-size", *_pairs(min_sizes)]
        if score_files:
            arguments += ["--score-maps", *_pairs(score_files)]
        arguments += ["--label-scale", label_map.getSamplingRate() / tomogram.getSamplingRate()]
        arguments += ["--tomo-id", tsId, "--sizes", cluster_sizes_path(particles_file)]
        run_engine(
            self,
            "cluster",
            arguments + ["--output", particles_file],
            outputs=[particles_file, cluster_sizes_path(particles_file)],
            subject=f"Label map {tsId}",
        )
        particles = io.read_particles_csv(particles_file)
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

    def createOutputStep(self):
        particles = ParticleTable.concat(
            [
                io.read_particles_csv(self._particlesFile(tsId))
                for tsId in tomograms_by_tsid(self.inputLabelMaps.get())
            ]
        )
        names = self._classNames()
        radii = self._radiiA()
        all_classes = DeepFinderClusterOutputs.coordinates.name
        outputs = {all_classes: self._coordinateSet(all_classes, particles, max(radii.values()))}
        for class_id in range(1, len(names)):
            name = class_output_name(names[class_id])
            outputs[name] = self._coordinateSet(name, particles.of_class(class_id), radii[class_id])
        self._defineOutputs(**outputs)
        for output in outputs.values():
            self._defineSourceRelation(self.inputLabelMaps, output)
        from ..figures.pictures import HISTOGRAMS_SIZE, clusters_page, write_png

        files = [self._particlesFile(tsId) for tsId in tomograms_by_tsid(self.inputLabelMaps.get())]
        write_png(
            self._getExtraPath("cluster_histograms.png"),
            clusters_page(files, names, self._hasScoreMaps()),
            HISTOGRAMS_SIZE,
        )

    # ----------------------------------------------------------------- helpers
    def _coordinateSet(self, name, particles, radius_A) -> SetOfCoordinates3D:
        sampling = self.inputTomograms.get().getSamplingRate()
        return new_coordinate_set(
            self._getPath(),
            name,
            self.inputTomograms,
            sampling,
            int(round(self.boxScale.get() * radius_A / sampling)),
            particles,
        )

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
        tomograms = tomograms_by_tsid(self.inputTomograms.get())
        for tsId, label_map in tomograms_by_tsid(self.inputLabelMaps.get()).items():
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

    def _summary(self):
        names = get_class_names(self.inputLabelMaps.get()) or []
        summary = [f"Classes: {class_table(names)}"] if names else []
        for _class_id, name in enumerate(names[1:], start=1):
            output = getattr(self, class_output_name(name), None)
            if output is not None:
                summary.append(f"{name}: {output.getSize()} particles")
        return summary

    def _methods(self):
        return ["Particles were located in DeepFinder label maps by mean-shift clustering [Moebel2021]."]

    def _citations(self):
        return ["Moebel2021"]


def _pairs(values: dict) -> list[str]:
    """``CLASS:VALUE`` words of a per-class setting, as the command line takes them."""
    return [f"{class_id}:{value}" for class_id, value in values.items()]
