"""Runs made with the DeepFinder 3.x plugin: their class names and forms, so that 3.x projects open.

Scipion finds a run's class by the name stored in the project database. These classes carry
the 3.x names and form parameters: a 3.x run shows with its parameters and outputs, and its
outputs (tomogram masks, coordinates, models: see ``objects.DeepFinderNet``) are inputs of
this plugin's protocols. The 3.x engine is gone, so they do not run again: continuing or
copying one says in one line which protocol replaces it and where its values go.
"""

from __future__ import annotations

import pyworkflow.object as pwobj
import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol

#: The patch sizes (px) the 3.x training form offered, in its choice order.
PATCH_SIZES_3X = (40, 44, 48, 52, 56, 60, 64)


class DeepFinderLegacyProtocol(EMProtocol):
    """A run of the DeepFinder 3.x plugin (shown, not run again)."""

    #: The label of this plugin's protocol that replaces it.
    _replacement = ""

    @classmethod
    def isDisabled(cls) -> bool:
        # Not offered among the protocols to run: only found by the name in old projects.
        return True

    def _insertAllSteps(self):
        pass

    def _mapping(self) -> str:
        """Where this run's values go in the replacing protocol."""
        raise NotImplementedError

    def _validate(self):
        return [
            f"This run was made with the DeepFinder 3.x plugin, whose engine is gone: run "
            f"'deepfinder - {self._replacement}' instead: {self._mapping()}."
        ]

    def _summary(self):
        # 3.x cluster and annotation runs kept their own summary in these attributes.
        kept = [getattr(self, name, None) for name in ("clusteringSummary", "annotationSummary")]
        note = f"A DeepFinder 3.x run, with usable outputs; 'deepfinder - {self._replacement}' replaces it."
        return [note] + [text.get() for text in kept if text is not None and text.get()]

    def _value(self, name: str) -> str:
        """A form value as text, an input as its output's name and run ('?' when unset)."""
        value = getattr(self, name, None)
        if isinstance(value, pwobj.Pointer):
            return self._outputName(value.get())
        return "?" if value is None or value.get() is None else str(value.get())

    def _outputName(self, output) -> str:
        """``<output> of '<run>'`` for an output of a run of the project, else its name."""
        if output is None:
            return "?"
        project, run_id = self.getProject(), output.getObjParentId()
        run = project.getProtocol(run_id) if project is not None and run_id else None
        return f"{output.getLastName()} of '{run.getRunName()}'" if run is not None else output.getNameId()


def _add_tomograms(form) -> None:
    """The tomograms parameter of 3.x picking protocols (tomo's ProtTomoPicking form)."""
    form.addParam("inputTomograms", params.PointerParam, pointerClass="SetOfTomograms", label="Tomograms")


class DeepFinderAnnotations(DeepFinderLegacyProtocol):
    """3.x: annotate particles by hand."""

    _label = "annotate particles (3.x)"
    _replacement = "annotate"

    def _defineParams(self, form):
        form.addSection(label="Input")
        _add_tomograms(form)
        form.addParam("boxSize", params.IntParam, default=50, label="Box size")

    def _mapping(self):
        return f"Tomograms = {self._value('inputTomograms')}; this run's coordinates as 'Existing particles'"


class DeepFinderGenerateTrainingTargetsSpheres(DeepFinderLegacyProtocol):
    """3.x: paint spheres at particle coordinates (training targets)."""

    _label = "generate sphere targets (3.x)"
    _replacement = "generate targets"

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputCoordinates", params.PointerParam, pointerClass="SetOfCoordinates3D")
        form.addParam("sphereRadii", params.StringParam, default="", label="Sphere radius [pix.]")
        form.addParallelSection(threads=4, mpi=1)

    def _mapping(self):
        return (
            f"Particles = {self._value('inputCoordinates')}, "
            f"Sphere radius per class = {self._value('sphereRadii')} with 'Radii in pixels? Yes'"
        )


class DeepFinderTrain(DeepFinderLegacyProtocol):
    """3.x: train the U-net on tomogram masks and coordinates."""

    _label = "train (3.x)"
    _replacement = "train"

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("tomoMasksTrain", params.PointerParam, pointerClass="SetOfTomoMasks")
        form.addParam("useSpecificValidation", params.BooleanParam, default=False)
        form.addParam("tomoMasksValid", params.PointerParam, pointerClass="SetOfTomoMasks", allowsNull=True)
        form.addParam("valDataFraction", params.FloatParam, default=0.3)
        form.addParam("coord", params.PointerParam, pointerClass="SetOfCoordinates3D")
        form.addSection(label="Training Parameters")
        form.addParam("psize", params.EnumParam, choices=[str(p) for p in PATCH_SIZES_3X], default=0)
        form.addParam("bsize", params.IntParam, default=25)
        form.addParam("epochs", params.IntParam, default=100)
        form.addParam("stepsPerE", params.IntParam, default=100)
        form.addParam("stepsPerV", params.IntParam, default=10)
        form.addParam("bootstrap", params.BooleanParam, default=True)
        form.addParam("rndShift", params.IntParam, default=13)
        form.addHidden(params.GPU_LIST, params.StringParam, default="0")

    def _mapping(self):
        psize = self.psize.get()
        patch = PATCH_SIZES_3X[psize] if psize is not None and 0 <= psize < len(PATCH_SIZES_3X) else "?"
        return (
            f"Label maps = {self._value('tomoMasksTrain')}, Particles = {self._value('coord')} "
            f"(classes from the coordinates' groupId), Patch size = {patch}, "
            f"Batch size = {self._value('bsize')}, Epochs = {self._value('epochs')}, "
            f"Steps per epoch = {self._value('stepsPerE')}, "
            f"Validation batches per epoch = {self._value('stepsPerV')}, "
            f"Random shift = {self._value('rndShift')}"
        )


class DeepFinderSegment(DeepFinderLegacyProtocol):
    """3.x: segment tomograms with a trained model."""

    _label = "segment (3.x)"
    _replacement = "segment"

    def _defineParams(self, form):
        form.addSection(label="Input")
        _add_tomograms(form)
        form.addParam("weights", params.PointerParam, pointerClass="DeepFinderNet")
        form.addParam("psize", params.IntParam, default=100, label="Patch size")
        form.addHidden(params.GPU_LIST, params.StringParam, default="0")
        form.addParallelSection(threads=1, mpi=0)

    def _mapping(self):
        return (
            f"Tomograms = {self._value('inputTomograms')}, Trained model = {self._value('weights')}, "
            f"Tile size = {self._value('psize')}"
        )


class DeepFinderCluster(DeepFinderLegacyProtocol):
    """3.x: cluster segmentations into particle coordinates."""

    _label = "cluster (3.x)"
    _replacement = "cluster"

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputSegmentations", params.PointerParam, pointerClass="SetOfTomoMasks")
        form.addParam("cradius", params.IntParam, default=5, label="Clustering radius")
        form.addParallelSection(threads=4, mpi=1)

    def _mapping(self):
        segmentations = self.inputSegmentations.get()
        radius = self.cradius.get()
        if segmentations is not None and segmentations.getSamplingRate() and radius:
            radius_text = f"{radius * segmentations.getSamplingRate():g} Å"
        else:
            radius_text = f"{radius} voxels times the voxel size in Å"
        return (
            f"Label maps = {self._value('inputSegmentations')} and their tomograms, "
            f"Particle radius = {radius_text}"
        )


class ProtDeepFinderLoadTrainingModel(DeepFinderLegacyProtocol):
    """3.x: register trained weights as a model."""

    _label = "Load Training Model (3.x)"
    _replacement = "import model"

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("netWeightsFile", params.FileParam, label="Model weights file")
        form.addParam("numClasses", params.IntParam, label="Number of classes")

    def _mapping(self):
        return (
            f"Weights file = {self._value('netWeightsFile')}, Class names = "
            f"{self._value('numClasses')} names (background excluded)"
        )


class ImportCoordinates3D(DeepFinderLegacyProtocol):
    """3.x: import DeepFinder object lists (XML) as coordinates."""

    _label = "import coordinates (3.x)"
    _replacement = "import particle lists"

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("filesPath", params.PathParam, label="Files directory")
        form.addParam("filesPattern", params.StringParam, label="Pattern")
        form.addParam("importTomograms", params.PointerParam, pointerClass="SetOfTomograms")

    def _mapping(self):
        return (
            f"Files = {self._value('filesPath')}/{self._value('filesPattern')}, "
            f"Tomograms = {self._value('importTomograms')}"
        )


class DeepFinderSWA(DeepFinderLegacyProtocol):
    """3.x: average the weights of several trained models."""

    _label = "swa (3.x)"
    _replacement = "segment"

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam("inputWeights", params.MultiPointerParam, pointerClass="DeepFinderNet")
        form.addParam("architecture", params.EnumParam, choices=["unet", "resunet"], default=0)
        form.addHidden(params.GPU_LIST, params.StringParam, default="0")

    def _mapping(self):
        return "weight averaging is not offered; give it this run's output model, or one it averaged"
