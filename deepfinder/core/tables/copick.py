"""copick projects: the picks of their particle objects, and the tomograms of their runs.

copick itself needs numpy >= 2, which Scipion's pins forbid: this module follows the layout and the
JSON schema of copick's filesystem projects as copick 1.31 writes them (learnt from its sources;
the tests read a project that copick wrote, ``deepfinder/tests/data/copick``):

- ``copick_config.json``: ``pickable_objects`` (``name``, ``is_particle``, ``label``...) and the
  project's roots, ``overlay_root`` and optionally ``static_root`` (``local://`` folders; a
  relative folder is taken from the config's folder).
- ``<root>/ExperimentRuns/<run>/Picks/<user_id>_<session_id>_<object>.json``: one object's picks
  in one run by one user and session: ``points``, each a ``location`` (``x, y, z``), a
  ``transformation_`` (4 x 4) and a ``score``. Session ``0`` marks picks made by a tool.
- ``<root>/ExperimentRuns/<run>/VoxelSpacing<voxel size, 3 decimals>/<type>.zarr``: a tomogram,
  OME-Zarr; its full-resolution array ``0`` has the shape (z, y, x).

As particle tables: the tomogram is the run, the class is the object's ``label``. A location is in
Angstrom from the tomogram corner (the centre of voxel ``i`` at ``i x`` voxel size), and the
particle lies at ``location + transformation[:3, 3]``: positions are read as a grid of 1 A voxels.
The rotation ``transformation[:3, :3]`` takes the object's frame to the tomogram's, as ours.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import atomic_output
from ..particles import ParticleTable
from .geometry import TableRead, TomogramGeometry

PathLike = str | os.PathLike

CONFIG = "copick_config.json"
LOCAL = "local://"
# Characters copick refuses in user and session ids: they are parts of file names split at "_".
FORBIDDEN_IN_IDS = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f\s_]')


@dataclass(frozen=True)
class CopickTomogram:
    """A tomogram of a copick project.

    Attributes
    ----------
    run : str
        The run (the tomogram's name in particle tables).
    tomo_type : str
        copick's tomogram type (``wbp``, ``denoised``...).
    path : Path
        The ``.zarr`` folder.
    geometry : TomogramGeometry
        Size (x, y, z) in voxels and voxel size in Angstrom.
    """

    run: str
    tomo_type: str
    path: Path
    geometry: TomogramGeometry


def config_path(path: PathLike) -> Path:
    """The config of the copick project ``path``: the file itself, or the :data:`CONFIG` of a folder."""
    path = Path(path)
    return path / CONFIG if path.is_dir() else path


def read(
    path: PathLike,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
    user_id: str | None = None,
    session_id: str | None = None,
) -> TableRead:
    """The picks of the particle objects of a copick project.

    Parameters
    ----------
    path : path
        The project's config (``copick_config.json``) or its folder.
    tomograms : mapping, optional
        Unused: copick positions need no tomogram geometry.
    user_id, session_id : str, optional
        Only the picks of this user, of this session; by default all.

    Returns
    -------
    TableRead
        Positions in Angstrom (``voxel_size`` 1.0), tomograms named by their runs, classes by
        the objects' labels.

    Raises
    ------
    InputError
        For a config or picks file that is not copick's JSON, a point without a location, a
        position that is not a finite number or a transformation that is not 4 x 4; the message
        names the file and the point.
    """
    path = config_path(path)
    config = _config(path)
    labels = _particle_labels(path, config)
    tables = []
    for root in _roots(path, config):
        for picks_path in sorted(root.glob("ExperimentRuns/*/Picks/*.json")):
            picks = _json(picks_path)
            name = picks.get("pickable_object_name")
            if name not in labels:
                continue
            if user_id is not None and picks.get("user_id") != user_id:
                continue
            if session_id is not None and str(picks.get("session_id")) != session_id:
                continue
            tables.append(_points(picks_path, picks, run=picks_path.parents[1].name, class_id=labels[name]))
    return TableRead(ParticleTable.concat(tables), 1.0)


def write(
    path: PathLike,
    particles: ParticleTable,
    voxel_size: float | None = None,
    tomograms: Mapping[str, TomogramGeometry] | None = None,
    user_id: str = "deepfinder",
    session_id: str = "0",
) -> Path:
    """Write particles as the picks of a copick project, one file per run and object.

    Parameters
    ----------
    path : path
        The project's config or its folder; picks go to its overlay root, the runs named by the tomograms.
    particles : ParticleTable
        Positions in voxels of ``voxel_size``; the class is the ``label`` of a particle object of
        the project. Picks of the same user, session, object and run are replaced.
    voxel_size : float
        Angstrom per voxel of the positions (copick's are in Angstrom).
    tomograms : mapping, optional
        Unused: copick positions need no tomogram geometry.
    user_id, session_id : str
        Whose picks these are; copick's session ``0`` marks a tool's picks.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    InputError
        Without a voxel size, for a user or session id that copick refuses, or for a class that
        is no particle object's label.
    """
    path = config_path(path)
    for key, value in (("user_id", user_id), ("session_id", session_id)):
        if not value or FORBIDDEN_IN_IDS.search(value):
            raise InputError(
                f"{key} {value!r}: copick ids are not empty and hold no spaces, underscores or "
                '<>:"/\\|?*; choose another'
            )
    if voxel_size is None:
        raise InputError(f"{path}: copick positions are in Angstrom: give the particles' voxel size")
    config = _config(path)
    names = {label: name for name, label in _particle_labels(path, config).items()}
    unknown = sorted(set(particles.class_id.tolist()) - set(names))
    if unknown:
        raise InputError(
            f"{path}: no particle object has the label of class(es) {unknown}; "
            f"add them to pickable_objects (labels {sorted(names)} are defined)"
        )
    overlay = _root(path, config["overlay_root"], "overlay_root")
    for run in dict.fromkeys(particles.tomo):
        for class_id in sorted(set(particles.of_tomogram(run).class_id.tolist())):
            picks = particles.of_tomogram(run).of_class(class_id)
            name = names[class_id]
            target = overlay / "ExperimentRuns" / run / "Picks" / f"{user_id}_{session_id}_{name}.json"
            content = {
                "pickable_object_name": name,
                "user_id": user_id,
                "session_id": session_id,
                "run_name": run,
                "voxel_spacing": None,
                "unit": "angstrom",
                "points": [_point(picks, i, voxel_size) for i in range(len(picks))],
                "trust_orientation": True,
            }
            with atomic_output(target) as temporary:
                temporary.write_text(
                    json.dumps(content, indent=4, ensure_ascii=False) + "\n", encoding="utf-8"
                )
    return path


def tomograms(path: PathLike) -> list[CopickTomogram]:
    """The tomograms of a copick project's runs, in its static and overlay roots.

    Raises
    ------
    InputError
        For a tomogram whose metadata do not give its size.
    """
    path = config_path(path)
    config = _config(path)
    found = []
    for root in _roots(path, config):
        for zarr in sorted(root.glob("ExperimentRuns/*/VoxelSpacing*/*.zarr")):
            voxel_size = float(zarr.parent.name.removeprefix("VoxelSpacing"))
            found.append(
                CopickTomogram(
                    run=zarr.parents[1].name,
                    tomo_type=zarr.name.removesuffix(".zarr"),
                    path=zarr,
                    geometry=TomogramGeometry(size_xyz=_zarr_size_xyz(zarr), voxel_size=voxel_size),
                )
            )
    return found


def _point(picks: ParticleTable, i: int, voxel_size: float) -> dict:
    transformation = np.eye(4)
    transformation[:3, :3] = picks.rotation[i]
    x, y, z = (float(v) for v in picks.xyz[i] * voxel_size)
    score = float(picks.score[i])
    return {
        "location": {"x": x, "y": y, "z": z},
        "transformation_": transformation.tolist(),
        "instance_id": 0,
        "score": score if math.isfinite(score) else None,
    }


def _points(path: Path, picks: dict, run: str, class_id: int) -> ParticleTable:
    """Particles of one picks file."""
    xyz, rotation, score = [], [], []
    for number, point in enumerate(picks.get("points") or []):
        where = f"{path}: points[{number}]"
        try:
            location = [float(point["location"][axis]) for axis in "xyz"]
            transformation = np.array(point.get("transformation_", np.eye(4)), dtype=float)
        except (KeyError, TypeError, ValueError) as error:
            raise InputError(f"{where}: no location x, y, z in numbers ({error})") from None
        if transformation.shape != (4, 4):
            raise InputError(f"{where}: transformation_ is not a 4 x 4 matrix")
        centre = np.array(location) + transformation[:3, 3]
        if not np.all(np.isfinite(centre)) or not np.all(np.isfinite(transformation)):
            raise InputError(f"{where}: location or transformation_ is not finite")
        xyz.append(centre)
        rotation.append(transformation[:3, :3])
        score.append(np.nan if point.get("score") is None else float(point["score"]))
    if not xyz:
        return ParticleTable.empty()
    return ParticleTable(tomo=run, class_id=class_id, xyz=xyz, rotation=rotation, score=score)


def _config(path: PathLike) -> dict:
    config = _json(Path(path))
    if not isinstance(config, dict) or "pickable_objects" not in config or "overlay_root" not in config:
        raise InputError(f"{path}: not a copick config (no pickable_objects and overlay_root)")
    return config


def _json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}:{error.lineno}:{error.colno}: not JSON ({error.msg})") from None


def _particle_labels(path: PathLike, config: dict) -> dict[str, int]:
    """Label of each particle object, by name."""
    labels = {}
    for number, item in enumerate(config["pickable_objects"]):
        if not isinstance(item, dict) or "name" not in item:
            raise InputError(f"{path}: pickable_objects[{number}] has no name")
        if item.get("is_particle"):
            labels[item["name"]] = int(item.get("label", 1))
    return labels


def _roots(path: PathLike, config: dict) -> list[Path]:
    """The project's local roots: static (if any), then overlay."""
    keys = [key for key in ("static_root", "overlay_root") if config.get(key)]
    return list(dict.fromkeys(_root(path, config[key], key) for key in keys))


def _root(path: PathLike, url: str, key: str) -> Path:
    if not url.startswith(LOCAL):
        raise InputError(
            f"{path}: {key} {url!r} is not a local folder (local://...): copy the project locally"
        )
    root = Path(url.removeprefix(LOCAL))
    return root if root.is_absolute() else Path(path).parent / root


def _zarr_size_xyz(zarr: Path) -> tuple[int, int, int]:
    """Size (x, y, z) of the full-resolution array of an OME-Zarr tomogram (zarr format 2 or 3)."""
    for metadata in (zarr / "0" / ".zarray", zarr / "0" / "zarr.json"):
        if metadata.is_file():
            shape = _json(metadata).get("shape")
            if isinstance(shape, list) and len(shape) == 3:
                return int(shape[2]), int(shape[1]), int(shape[0])
    raise InputError(f"{zarr}: no full-resolution array 0 with a 3D shape")
