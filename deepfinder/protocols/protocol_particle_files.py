"""Particle lists in and out of Scipion: DeepFinder XML object lists, CSV, RELION STAR."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol
from pyworkflow.constants import BETA
from tomo.objects import SetOfCoordinates3D

from ..convert import coordinates_to_table, new_coordinate_set, tomograms_by_tsid
from ..core import io
from ..core.particles import ParticleTable
from .protocol_base import coordinates_without_sampling_rate

FORMATS = ["xml", "csv", "star"]
STAR_CONVENTIONS = list(io.STAR_CONVENTIONS)
ALL_CLASSES = "coordinates"


def _star_params(form, condition: str):
    form.addParam(
        "starConvention",
        params.EnumParam,
        default=0,
        choices=STAR_CONVENTIONS,
        condition=condition,
        display=params.EnumParam.DISPLAY_HLIST,
        label="STAR convention",
        help="relion4: rlnCoordinateX/Y/Z in pixels from the tomogram corner.\n"
        "relion5: rlnCenteredCoordinateX/Y/ZAngst in Å from the tomogram centre.",
    )


def _tomogram_sizes(tomograms) -> dict:
    return {tsId: tuple(tomo.getDim()) for tsId, tomo in tomograms.items()}


class DeepFinderProtImportParticles(EMProtocol):
    """Import particle lists (DeepFinder XML object lists, CSV, RELION 4/5 STAR) as coordinates.

    Particles are matched to the tomograms by name: the list's tomogram column
    (tomo_idx, tomo, rlnTomoName) equal to a tsId or tomogram file name, else
    the list's own file name. The class becomes the groupId; one set per class
    is made as well. Orientations are kept.
    """

    _label = "import particle lists"
    _devStatus = BETA
    _possibleOutputs = {ALL_CLASSES: SetOfCoordinates3D}

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "filesPath",
            params.PathParam,
            label="Files",
            important=True,
            help="A particle list, or a glob pattern (e.g. /data/picks/*.xml). The "
            "format follows the extension: .xml, .csv or .star.",
        )
        form.addParam(
            "inputTomograms",
            params.PointerParam,
            pointerClass="SetOfTomograms",
            label="Tomograms",
            important=True,
        )
        _star_params(form, condition="True")
        form.addParam(
            "samplingRate",
            params.FloatParam,
            default=0.0,
            label="Coordinates sampling rate (Å/px)",
            help="Pixel size the positions are given in; 0: the tomograms'.",
        )
        form.addParam(
            "boxSize",
            params.IntParam,
            default=32,
            validators=[params.GT(0)],
            label="Box size (px)",
            help="At the tomograms' sampling rate.",
        )

    def _insertAllSteps(self):
        self._insertFunctionStep(self.importStep)

    def importStep(self):
        tomograms = tomograms_by_tsid(self.inputTomograms.get())
        particles = ParticleTable.concat([self._read(path, tomograms) for path in self._files()])
        known = np.isin(particles.tomo, list(tomograms))
        if not known.all():
            self.warning(
                f"{(~known).sum()} particles of unknown tomograms "
                f"({', '.join(sorted(set(particles.tomo[~known]))[:5])}) were skipped."
            )
        particles = particles.select(known)
        outputs = {ALL_CLASSES: particles}
        for class_id in np.unique(particles.class_id):
            outputs[f"coordinates_class{class_id}"] = particles.of_class(class_id)
        for name, table in outputs.items():
            coordinates = new_coordinate_set(
                self._getPath(),
                name,
                self.inputTomograms,
                self.inputTomograms.get().getSamplingRate(),
                self.boxSize.get(),
                table,
            )
            self._defineOutputs(**{name: coordinates})
            self._defineSourceRelation(self.inputTomograms, coordinates)

    def _files(self) -> list[str]:
        return sorted(glob.glob(os.path.expanduser(self.filesPath.get("").strip())))

    def _read(self, path: str, tomograms: dict) -> ParticleTable:
        table = io.read_particles(
            path,
            STAR_CONVENTIONS[self.starConvention.get()],
            voxel_size=self.samplingRate.get() or self.inputTomograms.get().getSamplingRate(),
            volume_shape_xyz=_tomogram_sizes(tomograms),
        )
        by_file_name = {Path(tomo.getFileName()).stem: tsId for tsId, tomo in tomograms.items()}
        own = by_file_name.get(Path(path).stem, Path(path).stem)
        tomo = np.array([name if name in tomograms else by_file_name.get(name, own) for name in table.tomo])
        table.tomo = tomo
        table.xyz = table.xyz * self._scale()
        return table

    def _scale(self) -> float:
        given = self.samplingRate.get()
        return given / self.inputTomograms.get().getSamplingRate() if given else 1.0

    def _validate(self):
        files = self._files()
        if not files:
            return [f"No file matches '{self.filesPath.get('')}'."]
        unknown = [f for f in files if Path(f).suffix.lower() not in io.PARTICLE_FILE_TYPES]
        if unknown:
            return [f"Unknown particle list format: {unknown[0]} (use .xml, .csv or .star)."]
        return []

    def _summary(self):
        if not self.hasAttribute(ALL_CLASSES):
            return [f"Files: {self.filesPath.get('')}"]
        return [f"{getattr(self, ALL_CLASSES).getSize()} particles imported from {self.filesPath.get('')}."]


class DeepFinderProtExportParticles(EMProtocol):
    """Export coordinates as a particle list: DeepFinder XML object list, CSV or RELION 4/5 STAR.

    Positions are written in pixels of the tomograms (sub-pixel), the class as
    the groupId (or one class per set), with the orientations and scores.
    """

    _label = "export particle lists"
    _devStatus = BETA

    def _defineParams(self, form):
        form.addSection(label="Input")
        form.addParam(
            "inputCoordinates",
            params.MultiPointerParam,
            pointerClass="SetOfCoordinates3D",
            label="Coordinates",
            important=True,
            help="One set with classes as groupId, or one set per class.",
        )
        form.addParam(
            "classPerSet",
            params.BooleanParam,
            default=False,
            label="One class per set?",
            help="Yes: the sets are classes 1, 2, ... in this order. No: use groupIds.",
        )
        form.addParam(
            "fileFormat",
            params.EnumParam,
            default=0,
            choices=FORMATS,
            display=params.EnumParam.DISPLAY_HLIST,
            label="Format",
        )
        _star_params(form, condition="fileFormat == 2")
        form.addParam(
            "outputFolder",
            params.PathParam,
            default="",
            label="Also copy to (optional)",
            help="A folder to write the file to, besides the run's extra folder.",
        )

    def _insertAllSteps(self):
        self._insertFunctionStep(self.exportStep)

    def exportStep(self):
        first = self.inputCoordinates[0].get()
        sampling = first.getSamplingRate()
        particles = ParticleTable.concat(
            [
                coordinates_to_table(pointer.get(), sampling, class_id=i + 1 if self.classPerSet else None)
                for i, pointer in enumerate(self.inputCoordinates)
            ]
        )
        for folder in filter(None, [self._getExtraPath(), self.outputFolder.get("").strip()]):
            self._write(Path(folder) / f"particles.{FORMATS[self.fileFormat.get()]}", particles, first)

    def _write(self, path: Path, particles: ParticleTable, coordinates):
        sizes = None
        if io.particle_file_type(path) == ".star":  # RELION 5 coordinates are centred: sizes needed
            sizes = _tomogram_sizes(tomograms_by_tsid(coordinates.getPrecedents()))
        io.write_particles(
            path,
            particles,
            STAR_CONVENTIONS[self.starConvention.get()],
            voxel_size=coordinates.getSamplingRate(),
            volume_shape_xyz=sizes,
        )
        self.info(f"Wrote {len(particles)} particles to {path}")

    def _validate(self):
        sets = [pointer.get() for pointer in self.inputCoordinates]
        missing = coordinates_without_sampling_rate(sets)
        if missing:
            return missing
        if len({round(coords.getSamplingRate(), 3) for coords in sets}) > 1:
            return ["The coordinate sets have different sampling rates: export them separately."]
        return []

    def _summary(self):
        files = sorted(Path(self._getExtraPath()).glob("particles.*"))
        return [f"Written: {path}" for path in files] or ["Nothing written yet."]
