"""Scipion objects <-> engine arrays and particle tables.

The only module that knows both worlds. Positions cross it in voxels of the
tomogram they belong to (corner origin, ``BOTTOM_LEFT_CORNER``); Angstrom are
turned into voxels here and nowhere else.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pyworkflow.object as pwobj
from tomo.constants import BOTTOM_LEFT_CORNER
from tomo.objects import Coordinate3D, SetOfCoordinates3D, TomoMask

from .core.particles import ParticleTable
from .core.tables import TomogramGeometry

CLASS_NAMES_ATTR = "deepfinderClassNames"
LABEL_ATTR = "_deepfinderLabel"
SCORE_FILES_ATTR = "deepfinderScoreFiles"


def tomograms_by_tsid(tomograms) -> dict:
    """Copies of the items of a SetOfTomograms (or SetOfTomoMasks), keyed by tsId."""
    return {tomo.getTsId(): tomo.clone() for tomo in tomograms.iterItems()}


def tomogram_geometries(tomograms: dict) -> dict[str, TomogramGeometry]:
    """Size (x, y, z voxels) and sampling rate of tomograms keyed by tsId, as tables need them."""
    return {
        tsId: TomogramGeometry(tuple(int(n) for n in tomo.getDim()), tomo.getSamplingRate())
        for tsId, tomo in tomograms.items()
    }


def unique_values(coordinates: SetOfCoordinates3D, attribute: str) -> set:
    """Distinct values of an attribute (e.g. ``Coordinate3D.TOMO_ID_ATTR``); empty for an empty set,
    where Scipion's own query fails."""
    return set(coordinates.getUniqueValues(attribute)) if coordinates.getSize() else set()


def coordinates_to_table(
    coordinates: SetOfCoordinates3D, sampling_rate: float, class_id: int | None = None
) -> ParticleTable:
    """Particles of a coordinate set, in voxels at ``sampling_rate`` (A/px).

    The class is ``class_id`` when given (one set per class), else each
    coordinate's groupId. Orientations come from the coordinates' matrices.
    """
    scale = coordinates.getSamplingRate() / sampling_rate
    tomo, classes, xyz, rotation, score = [], [], [], [], []
    for coord in coordinates.iterCoordinates():
        tomo.append(coord.getTomoId())
        classes.append(class_id if class_id is not None else coord.getGroupId())
        xyz.append(np.array(coord.getPosition(BOTTOM_LEFT_CORNER), dtype=float) * scale)
        # Scipion stores M with particle(r) = reference(M r): our rotation is its inverse.
        rotation.append(np.asarray(coord.getMatrix())[:3, :3].T)
        score.append(coord.getScore())
    if not tomo:
        return ParticleTable.empty()
    return ParticleTable(
        tomo=np.array(tomo),
        class_id=np.array(classes),
        xyz=np.array(xyz),
        rotation=np.array(rotation),
        score=np.array(score, dtype=float),
    )


def append_table(
    coordinates: SetOfCoordinates3D, table: ParticleTable, tomograms: dict, labels: np.ndarray | None = None
) -> None:
    """Append particles (voxels of the tomograms in ``tomograms``, keyed by tsId) to a set.

    ``labels``, one string per particle, is stored in each coordinate's
    ``_deepfinderLabel`` attribute (e.g. which pickers found it).
    """
    for i in range(len(table)):
        coord = Coordinate3D()
        if labels is not None:
            setattr(coord, LABEL_ATTR, pwobj.String(str(labels[i])))
        coord.setVolume(tomograms[table.tomo[i]])
        coord.setPosition(*table.xyz[i], BOTTOM_LEFT_CORNER)
        coord.setGroupId(int(table.class_id[i]))
        if np.isfinite(table.score[i]):
            coord.setScore(float(table.score[i]))
        matrix = np.eye(4)
        matrix[:3, :3] = table.rotation[i].T
        coord.setMatrix(matrix)
        coordinates.append(coord)


def new_coordinate_set(
    folder: str,
    name: str,
    tomograms,
    sampling_rate: float,
    box_size: int,
    particles: ParticleTable,
    labels: np.ndarray | None = None,
) -> SetOfCoordinates3D:
    """A coordinate set in its own file ``<folder>/<name>.sqlite`` holding ``particles``.

    ``tomograms`` (a SetOfTomograms or a pointer to it) become the precedents;
    positions are voxels at ``sampling_rate`` (A/px), ``box_size`` in those voxels.
    """
    coordinates = SetOfCoordinates3D.create(folder, prefix=name)
    coordinates.setPrecedents(tomograms)
    coordinates.setSamplingRate(sampling_rate)
    coordinates.setBoxSize(box_size)
    precedents = tomograms.get() if isinstance(tomograms, pwobj.Pointer) else tomograms
    append_table(coordinates, particles, tomograms_by_tsid(precedents), labels=labels)
    return coordinates


def class_output_name(class_name: str) -> str:
    """``coordinates_<class>``: the name of a class's output set, a valid identifier."""
    return "coordinates_" + re.sub(r"\W", "_", class_name)


def new_tomo_mask(tomogram, path: str) -> TomoMask:
    """A TomoMask for the label map ``path`` of ``tomogram`` (same tsId, sampling, origin)."""
    mask = TomoMask()
    mask.setLocation(path)
    mask.setVolName(tomogram.getFileName())
    mask.setTsId(tomogram.getTsId())
    mask.setSamplingRate(tomogram.getSamplingRate())
    mask.setOrigin(tomogram.getOrigin())
    if tomogram.hasAcquisition():
        mask.setAcquisition(tomogram.getAcquisition())
    return mask


def set_class_names(label_set, names: list[str]) -> None:
    """Record on a set of label maps what each label means (background first)."""
    setattr(label_set, CLASS_NAMES_ATTR, pwobj.String(json.dumps(list(names))))


def get_class_names(label_set) -> list[str] | None:
    """Class names recorded by :func:`set_class_names`, or None."""
    value = getattr(label_set, CLASS_NAMES_ATTR, None)
    return json.loads(value.get()) if value is not None and value.get() else None


def set_score_files(label_map, score_files: dict) -> None:
    """Record on a label map the score map file of each class (class id: path)."""
    setattr(
        label_map,
        SCORE_FILES_ATTR,
        pwobj.String(json.dumps({k: str(path) for k, path in score_files.items()})),
    )


def get_score_files(label_map) -> dict[str, str]:
    """Score map files recorded by :func:`set_score_files` (class ids as strings), or {}."""
    value = getattr(label_map, SCORE_FILES_ATTR, None)
    return json.loads(value.get() or "{}") if value is not None else {}


def class_table(names: list[str]) -> str:
    """``1: ribosome, 2: proteasome``: how labels are shown to users."""
    return ", ".join(f"{i}: {name}" for i, name in enumerate(names) if i)
