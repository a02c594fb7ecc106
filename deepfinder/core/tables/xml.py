"""DeepFinder (and SHREC) XML object lists: ``<objlist><object tomo_idx class_label x y z phi psi the/>``.

Positions in voxels of the tomogram, from its corner; angles ZXZ in degrees; ``cluster_size``
carries the score. The file states no voxel size.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_output
from ..particles import ParticleTable, rotations_from_euler_zxz
from .geometry import TableRead, TomogramGeometry
from .values import number, whole_numbers


def write(
    path: str | os.PathLike,
    table: ParticleTable,
    voxel_size: float | None = None,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
) -> Path:
    """Write ``table`` (positions in voxels of the tomograms) as an object list.

    ``tomo_idx`` is the tomogram identifier as given; ``voxel_size`` and ``tomograms`` are not stored.
    """
    path = Path(path)
    root = ET.Element("objlist")
    angles = table.euler_zxz()
    for i in range(len(table)):
        phi, the, psi = angles[i]
        attributes = {
            "tomo_idx": str(table.tomo[i]),
            "class_label": str(int(table.class_id[i])),
            "x": f"{table.xyz[i, 0]:.4f}",
            "y": f"{table.xyz[i, 1]:.4f}",
            "z": f"{table.xyz[i, 2]:.4f}",
            "phi": f"{phi:.4f}",
            "psi": f"{psi:.4f}",
            "the": f"{the:.4f}",
        }
        if not np.isnan(table.score[i]):
            attributes["cluster_size"] = f"{table.score[i]:.6g}"
        ET.SubElement(root, "object", attributes)
    with atomic_output(path) as temporary:
        ET.ElementTree(root).write(temporary, encoding="utf-8", xml_declaration=True)
    return path


def read(
    path: str | os.PathLike,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
    voxel_size: float | None = None,
) -> TableRead:
    """Read an object list; positions in the tomograms' voxels (``voxel_size`` None: not stated).

    A file that is not XML, or an object without a position or with a value that is not a finite
    number, raises :class:`InputError` naming the file and the object (1 for the first).
    """
    try:
        objects = ET.parse(path).getroot().findall("object")
    except ET.ParseError as error:
        raise InputError(f"{path}: not a readable XML object list ({error})") from None
    if not objects:
        return TableRead(ParticleTable.empty(), None)

    def attribute(name: str, default: float | None = None) -> np.ndarray:
        values = []
        for index, element in enumerate(objects, start=1):
            text = (element.get(name) or "").strip()
            where = f"{path}: object {index}: attribute {name}"
            if not text and default is None:
                raise InputError(f"{where}: missing value")
            values.append(number(text, where) if text else default)
        return np.array(values, dtype=float)

    particles = ParticleTable(
        tomo=np.array([o.get("tomo_idx", "0") for o in objects], dtype=str),
        class_id=whole_numbers(
            attribute("class_label"),
            [f"{path}: object {i}: attribute class_label" for i in range(1, len(objects) + 1)],
            "class labels",
        ),
        xyz=np.stack([attribute("x"), attribute("y"), attribute("z")], axis=1),
        rotation=rotations_from_euler_zxz(
            attribute("phi", 0.0), attribute("the", 0.0), attribute("psi", 0.0)
        ),
        score=attribute("cluster_size", np.nan),
    )
    return TableRead(particles, None)
