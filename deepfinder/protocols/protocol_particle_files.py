"""Particle lists in and out of Scipion, in every format of :mod:`deepfinder.core.tables`."""

from __future__ import annotations

import glob
import os
from pathlib import Path

import numpy as np
import pyworkflow.protocol.params as params
from pwem.protocols import EMProtocol
from pyworkflow.constants import BETA
from tomo.convert.mdoc import normalizeTSId
from tomo.objects import SetOfCoordinates3D

from ..convert import coordinates_to_table, new_coordinate_set, tomogram_geometries, tomograms_by_tsid
from ..core import tables
from ..core.errors import InputError
from ..core.particles import ParticleTable
from .protocol_base import coordinates_without_sampling_rate

# Formats written as a file of their own (a copick project's picks need its config).
EXPORT_FORMATS = [name for name, table_format in tables.FORMATS.items() if not table_format.folder]
ALL_CLASSES = "coordinates"
# The form's field of each format option of the table registry.
OPTION_FIELDS = {
    "table_map": "tableMap",
    "subvolume_offset": "subvolumeOffset",
    "user_id": "copickUserId",
    "session_id": "copickSessionId",
}


class DeepFinderProtImportParticles(EMProtocol):
    """Import particle lists as coordinates: every format of the engine's table registry (CSV,
    DeepFinder XML, RELION 5 and 4/3.1, Warp, WarpTools STAR, Dynamo, STOPGAP, IMOD, copick).

    Particles are matched to the tomograms by name: the list's tomogram column
    (tomo_idx, tomo, rlnTomoName, Dynamo/STOPGAP numbers as Scipion names them,
    TS_<number>) equal to a tsId or tomogram file name, else, for a list of one
    tomogram, the list's own file name. Positions are moved to the tomograms' voxels from
    the units the file states (RELION 5: Angstrom from the centre of the
    tomograms' size, or of a tomograms.star's), else from the sampling rate given.
    The class becomes the groupId; one set per class is made as well.
    Orientations are kept.
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
            help="A particle list, or a glob pattern (e.g. /data/picks/*.star). The "
            "format follows the extension: .csv, .xml, .star (RELION 5, 4/3.1, Warp, WarpTools, or "
            "STOPGAP, told by its content), .tbl (Dynamo), .mod (IMOD), or a copick project's "
            "copick_config.json or folder.",
        )
        form.addParam(
            "inputTomograms",
            params.PointerParam,
            pointerClass="SetOfTomograms",
            label="Tomograms",
            important=True,
        )
        form.addParam(
            "samplingRate",
            params.FloatParam,
            default=0.0,
            label="Coordinates sampling rate (Å/px)",
            help="Pixel size of the positions, for files that do not state it: CSV and XML (0: the "
            "tomograms'), STAR without a pixel size, Dynamo, STOPGAP, IMOD models in pixels (needed).",
        )
        form.addParam(
            "tomogramsStar",
            params.PathParam,
            default="",
            label="RELION 5 tomograms.star (optional)",
            help="Sizes of the tomograms RELION 5 centred its positions on; empty: the tomograms' own.",
        )
        form.addParam(
            "boxSize",
            params.IntParam,
            default=32,
            validators=[params.GT(0)],
            label="Box size (px)",
            help="At the tomograms' sampling rate.",
        )
        form.addParam(
            "tableMap",
            params.PathParam,
            default="",
            expertLevel=params.LEVEL_ADVANCED,
            label="Dynamo/STOPGAP table map (optional)",
            help=tables.OPTIONS["table_map"].help,
        )
        form.addParam(
            "subvolumeOffset",
            params.BooleanParam,
            default=False,
            expertLevel=params.LEVEL_ADVANCED,
            label="IMOD: add the sub-volume offset?",
            help=tables.OPTIONS["subvolume_offset"].help,
        )
        form.addParam(
            "copickUserId",
            params.StringParam,
            default="",
            expertLevel=params.LEVEL_ADVANCED,
            label="copick user (optional)",
            help=tables.OPTIONS["user_id"].help,
        )
        form.addParam(
            "copickSessionId",
            params.StringParam,
            default="",
            expertLevel=params.LEVEL_ADVANCED,
            label="copick session (optional)",
            help=tables.OPTIONS["session_id"].help,
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
        by_file_name = {Path(tomo.getFileName()).stem: tsId for tsId, tomo in tomograms.items()}
        geometries = tomogram_geometries(tomograms)
        geometries.update({stem: geometries[tsId] for stem, tsId in by_file_name.items()})
        if self.tomogramsStar.get("").strip():
            geometries = tables.star.read_tomograms(self.tomogramsStar.get().strip())
        sampling = self.inputTomograms.get().getSamplingRate()
        accepted = tables.table_format(path, reading=True).read_options
        table = tables.read_table(
            path,
            tomograms=geometries,
            coordinates_voxel_size=self.samplingRate.get() or None,
            voxel_size=sampling,
            **{name: value for name, value in self._options().items() if name in accepted},
        ).particles
        # A list of one tomogram may name it otherwise (an IMOD model, Dynamo's number without a
        # table map): its file name then tells; the rows of several unknown tomograms stay unknown.
        own = by_file_name.get(Path(path).stem, Path(path).stem) if len(set(table.tomo)) == 1 else ""

        def ts_id(name: str) -> str:
            if name in tomograms:
                return name
            if name in by_file_name:
                return by_file_name[name]
            # Scipion's own renaming of tilt-series names (e.g. a leading digit: 01006 -> TS_01006).
            normalized = normalizeTSId(name) if name else ""
            return normalized if normalized in tomograms else own

        table.tomo = np.array([ts_id(name) for name in table.tomo])
        return table

    def _options(self) -> dict:
        """The format options given in the form, by the registry's names."""
        options = {}
        for name, field in OPTION_FIELDS.items():
            value = getattr(self, field).get()
            options[name] = (value.strip() or None) if isinstance(value, str) else (value or None)
        return options

    def _validate(self):
        files = self._files()
        if not files:
            return [f"No file matches '{self.filesPath.get('')}'."]
        formats = set()
        for path in files:
            try:
                formats.add(tables.table_format(path, reading=True))
            except InputError as error:
                return [str(error)]
        accepted = {name for table_format in formats for name in table_format.read_options}
        return [
            f"'{self.getParam(OPTION_FIELDS[name]).label.get()}' does not apply to "
            f"{', '.join(sorted(f.name for f in formats))} files: clear it."
            for name, value in self._options().items()
            if value and name not in accepted
        ]

    def _summary(self):
        if not self.hasAttribute(ALL_CLASSES):
            return [f"Files: {self.filesPath.get('')}"]
        return [f"{getattr(self, ALL_CLASSES).getSize()} particles imported from {self.filesPath.get('')}."]


class DeepFinderProtExportParticles(EMProtocol):
    """Export coordinates as a particle list: CSV, DeepFinder XML, RELION 5 or RELION 4 STAR,
    Dynamo (with its .doc table map), STOPGAP, or IMOD (one model per tomogram,
    particles_<tsId>.mod).

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
            choices=EXPORT_FORMATS,
            display=params.EnumParam.DISPLAY_HLIST,
            label="Format",
        )
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
            self._write(Path(folder), particles, first)

    def _write(self, folder: Path, particles: ParticleTable, coordinates):
        table_format = tables.FORMATS[EXPORT_FORMATS[self.fileFormat.get()]]
        extension = table_format.extensions[0]
        if table_format.one_tomogram:
            files = {
                f"particles_{tsId}{extension}": particles.of_tomogram(tsId) for tsId in set(particles.tomo)
            }
        else:
            files = {f"particles{extension}": particles}
        for name, table in sorted(files.items()):
            tables.write_table(
                folder / name,
                table,
                table_format.name,
                voxel_size=coordinates.getSamplingRate(),
                tomograms=tomogram_geometries(tomograms_by_tsid(coordinates.getPrecedents())),
            )
            self.info(f"Wrote {len(table)} particles to {folder / name}")

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
