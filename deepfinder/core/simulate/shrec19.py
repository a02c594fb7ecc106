"""The SHREC'19 templates and particle layouts, used by the bench preset.

The files are not shipped with the plugin: give the folder holding ``shrec19/``
and ``templates_10A/`` with ``--shrec-dir`` or the environment variable named
by :data:`SHREC19_DIR_VARIABLE`.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from ..errors import InputError
from ..particles import ParticleTable
from ..shapes import ParticleShape, load_shape
from ..tables import xml as particle_xml

SHREC19_CLASSES = (
    "1bxn",
    "1qvr",
    "1s3x",
    "1u6g",
    "2cg9",
    "3cf3",
    "3d2f",
    "3gl1",
    "3h84",
    "3qm1",
    "4b4t",
    "4d8q",
)


SHREC19_DIR_VARIABLE = "DEEPFINDER_SHREC19_DIR"


def shrec19_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding the SHREC'19 data (``shrec19/`` and ``templates_10A/``).

    Parameters
    ----------
    data_dir : path, optional
        The folder; when None, the one named by the environment variable
        ``DEEPFINDER_SHREC19_DIR``.

    Raises
    ------
    ValueError
        When neither names a folder holding ``shrec19/``; the message names both ways to give it.
    """
    chosen = data_dir if data_dir is not None else os.environ.get(SHREC19_DIR_VARIABLE) or None
    if chosen is not None and (Path(chosen) / "shrec19").is_dir():
        return Path(chosen)
    found = f"{chosen} has no shrec19/ folder" if chosen is not None else "no folder was given"
    raise InputError(
        f"The SHREC'19 data is needed ({found}): give the folder holding shrec19/ and templates_10A/ "
        f"with --shrec-dir or the {SHREC19_DIR_VARIABLE} environment variable, or use the tiny or demo preset"
    )


def shrec19_shapes(
    voxel_size: float = 10.0, data_dir: str | os.PathLike | None = None
) -> list[ParticleShape]:
    """The 12 SHREC'19 classes in class-label order.

    Densities come from ``templates_10A/<pdb>.mrc``; 4b4t and 4d8q, missing
    there, use the binary ``shrec19/masks/<pdb>.mrc`` (1 nm voxels) smoothed by
    one voxel, so their mask is the SHREC shape and their inside is flat.
    ``data_dir`` is found by :func:`shrec19_dir`.
    """
    data_dir = shrec19_dir(data_dir)
    shapes = []
    for name in SHREC19_CLASSES:
        template = data_dir / "templates_10A" / f"{name}.mrc"
        if template.exists():
            # At 3% of the maximum the masks match the SHREC'19 masks' volumes within 5%.
            shapes.append(load_shape(template, voxel_size, threshold_fraction=0.03, name=name))
        else:
            with warnings.catch_warnings():
                # Known: these masks have a zero machine stamp and are read permissively.
                warnings.simplefilter("ignore")
                shapes.append(
                    load_shape(
                        data_dir / "shrec19" / "masks" / f"{name}.mrc",
                        voxel_size,
                        template_voxel_size=10.0,
                        threshold_fraction=0.5,
                        name=name,
                        smooth_voxels=1.0 * 10.0 / voxel_size,
                    )
                )
    return shapes


def shrec19_layout(index: int, data_dir: str | os.PathLike | None = None) -> ParticleTable:
    """Positions and orientations of SHREC'19 training tomogram ``index`` (0-8).

    ``data_dir`` is found by :func:`shrec19_dir`.
    """
    path = shrec19_dir(data_dir) / "shrec19" / "object_list_train.xml"
    if not path.exists():
        raise ValueError(f"SHREC'19 layouts not found at {path}: use the tiny or demo preset")
    table = particle_xml.read(path).particles.of_tomogram(str(index))
    if not len(table):
        raise ValueError(f"{path} has no tomogram {index}; SHREC'19 training tomograms are 0-8")
    return table
