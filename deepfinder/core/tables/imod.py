"""IMOD models (``.mod``) as particle tables: every point of every contour is a particle.

- Classes: the object number (1 for the first object); a model holds the particles of one tomogram.
- Positions: IMOD puts the centre of the voxel of index (i, j, k) at model point
  (i + 0.5, j + 0.5, k): x and y count from the corner of the first voxel, z from the centre of the
  first section (models flagged "Z coordinates start from -0.5", as 3dmod writes them). Points
  are in voxels of the image the model was drawn on.
- Sub-volumes: the model's ``MINX`` chunk keeps that image's origin (``ctrans``, Angstrom, the
  MRC origin) and voxel size (``cscale``). With ``subvolume_offset``, positions are moved by
  ``-ctrans / cscale`` voxels, as IMOD's own programs compute the coordinates of a model drawn on a
  sub-volume cut by trimvol in the full volume; the image rotation ``crot`` is left out, as
  they leave it out.
- Voxel size: the header's pixel size in its units; None for a model in pixels.
- Tomogram name: the model's name, unless it is 3dmod's ``IMOD-NewModel``; then the file name
  without extension. :func:`write` stores the tomogram name as the model's name.
- IMOD points carry no orientation and no score: orientations read are the identity, scores NaN,
  and :func:`write` drops both.

Read and written through the ``imodmodel`` package.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from imodmodel import ImodModel
from imodmodel.models import Contour, ModelFlags, ModelHeader, Object, ObjectFlags, ObjectHeader

from ..errors import InputError
from ..io import atomic_output
from ..particles import ParticleTable
from .geometry import TableRead, TomogramGeometry
from .values import check_finite

PathLike = str | os.PathLike

log = logging.getLogger(__name__)

# Model point of the centre of voxel (0, 0, 0).
FIRST_VOXEL_CENTRE = np.array([0.5, 0.5, 0.0])
DEFAULT_MODEL_NAME = "IMOD-NewModel"
# Bytes of the model name field, its last one a terminating zero.
NAME_BYTES = 127
# Angstrom per unit of IMOD's header "units" (a power of ten of metres); 0 is pixels.
ANGSTROM_PER_UNIT = {-12: 0.01, -10: 1.0, -9: 10.0, -6: 1e4, -3: 1e7, -2: 1e8, 1: 1e10}
ANGSTROM_UNIT = -10


def read(
    path: PathLike,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
    subvolume_offset: bool = False,
    tomogram: str | None = None,
) -> TableRead:
    """Particles of an IMOD model.

    Parameters
    ----------
    path : path
        The ``.mod`` file.
    tomograms : mapping, optional
        Unused: IMOD positions need no tomogram geometry.
    subvolume_offset : bool
        Move positions by the origin of the image the model was drawn on (``MINX``), for a model
        drawn on a sub-volume whose origin says where it lies in the full tomogram.
    tomogram : str, optional
        Name of the tomogram; by default the model's name or the file name (see the module).

    Returns
    -------
    TableRead
        Positions in voxels of the image the model was drawn on (of the full volume with
        ``subvolume_offset``); the voxel size the header states, or None.

    Raises
    ------
    InputError
        For a file that is not an IMOD model, a point that is not finite, or an offset asked of a
        model without ``MINX``.
    """
    try:
        model = ImodModel.from_file(path)
    except Exception as error:  # imodmodel raises whatever its parsing meets
        raise InputError(f"{path}: not a readable IMOD model ({type(error).__name__}: {error})") from None
    classes, points = [], []
    for number, imod_object in enumerate(model.objects, start=1):
        for contour in imod_object.contours:
            points.append(np.asarray(contour.points, dtype=float).reshape(-1, 3))
            classes.append(np.full(len(points[-1]), number))
    xyz = np.concatenate(points) if points else np.empty((0, 3))
    check_finite(xyz, [f"point {i + 1}" for i in range(len(xyz))], ["x", "y", "z"], path)
    xyz = xyz - FIRST_VOXEL_CENTRE
    if subvolume_offset:
        xyz = xyz + _subvolume_offset(path, model)
    name = model.header.name
    if tomogram is None:
        tomogram = name if name and name != DEFAULT_MODEL_NAME else Path(path).stem
    particles = ParticleTable(
        tomo=tomogram,
        class_id=np.concatenate(classes) if classes else np.empty(0, dtype=int),
        xyz=xyz,
    )
    return TableRead(particles, _voxel_size(model.header))


def write(
    path: PathLike,
    particles: ParticleTable,
    voxel_size: float | None = None,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
) -> Path:
    """Write the particles of one tomogram as an IMOD model.

    Parameters
    ----------
    path : path
        The ``.mod`` file.
    particles : ParticleTable
        Particles of one tomogram, of classes 1 and up: class ``k`` is object ``k``, one scattered
        contour (objects of classes without particles are empty).
    voxel_size : float, optional
        Angstrom per voxel, written as the pixel size (in Angstrom); without it the model is in
        pixels.
    tomograms : mapping, optional
        Geometry of the tomogram, for the image size the header records; without it, the size
        the points span.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        For particles of several tomograms, of class 0, or a tomogram name longer than a model
        name can hold.
    """
    path = Path(path)
    names = sorted(set(particles.tomo))
    if len(names) > 1:
        raise InputError(
            f"{path}: an IMOD model holds the particles of one tomogram, these are of {len(names)}; "
            "write one model per tomogram"
        )
    if np.any(particles.class_id < 1):
        raise InputError(f"{path}: IMOD objects are numbered from 1: class 0 (background) cannot be written")
    name = names[0] if names else DEFAULT_MODEL_NAME
    if len(name.encode("utf-8")) > NAME_BYTES:
        raise InputError(
            f"{path}: the tomogram name {name!r} is longer than an IMOD model name ({NAME_BYTES} bytes)"
        )
    points = particles.xyz + FIRST_VOXEL_CENTRE
    objects = []
    for class_id in range(1, int(particles.class_id.max(initial=0)) + 1):
        members = points[particles.class_id == class_id]
        objects.append(
            Object(
                header=ObjectHeader(name=f"class {class_id}", flags=ObjectFlags(scattered=True, open=True)),
                contours=[Contour(points=members)] if len(members) else [],
            )
        )
    if tomograms is not None and name in tomograms:
        size = tomograms[name].size_xyz
    else:
        size = np.ceil(points.max(axis=0, initial=0)).astype(int) + 1
    header = ModelHeader(
        name=name,
        xmax=int(size[0]),
        ymax=int(size[1]),
        zmax=int(size[2]),
        flags=ModelFlags(z_coordinates_start_from_negative_half=True),
        pixelsize=voxel_size or 1.0,
        units=ANGSTROM_UNIT if voxel_size else 0,
    )
    model = ImodModel(header=header, objects=objects)
    for imod_object in model.objects:
        imod_object.update_sizes()
    model.update_sizes()
    with atomic_output(path, ".mod") as temporary:
        model.to_file(temporary)
    return path


def _subvolume_offset(path: PathLike, model: ImodModel) -> np.ndarray:
    """Voxels to add to a model's points for the coordinates of the volume its image's origin refers to."""
    if model.minx is None:
        raise InputError(
            f"{path}: the model records no image origin (no MINX chunk); "
            "read it without the sub-volume offset"
        )
    return -np.asarray(model.minx.ctrans, dtype=float) / np.asarray(model.minx.cscale, dtype=float)


def _voxel_size(header: ModelHeader) -> float | None:
    """Angstrom per voxel the header states; None for a model in pixels or of unknown units."""
    if header.units not in ANGSTROM_PER_UNIT or header.pixelsize <= 0:
        return None
    return float(header.pixelsize * ANGSTROM_PER_UNIT[header.units])
