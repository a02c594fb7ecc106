"""Particles annotated by hand (add, move, delete, undo) and picks reviewed (accept, reject, correct).

The models behind the annotation window (:mod:`deepfinder.viewers.annotation_window`),
without any display. Positions are x, y, z in voxels (as in :class:`ParticleTable`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from os import PathLike

import numpy as np

from . import io
from .errors import InputError
from .particles import ParticleTable


@dataclass
class ParticleClass:
    """A class of particles as annotated: its name, display colour and radius in voxels."""

    name: str
    colour: str
    radius_voxels: float


class Annotation:
    """Particles of one tomogram being annotated, with an undo history.

    Parameters
    ----------
    tomo : str
        Tomogram identifier written into the particle table.
    particles : ParticleTable, optional
        Particles to start from (a previous sitting, another picker). Their
        orientations and scores are kept as long as they are not moved.
    """

    def __init__(self, tomo: str, particles: ParticleTable | None = None):
        self.tomo = tomo
        particles = particles if particles is not None else ParticleTable.empty()
        self._xyz = np.array(particles.xyz, dtype=float).reshape(-1, 3)
        self._class_id = np.array(particles.class_id, dtype=int)
        self._rotation = np.array(particles.rotation, dtype=float).reshape(-1, 3, 3)
        self._score = np.array(particles.score, dtype=float)
        self._history: list[tuple[np.ndarray, ...]] = []

    def __len__(self) -> int:
        return len(self._xyz)

    @property
    def xyz(self) -> np.ndarray:
        """(n, 3) positions in voxels (a copy)."""
        return self._xyz.copy()

    @property
    def class_id(self) -> np.ndarray:
        return self._class_id.copy()

    def table(self) -> ParticleTable:
        """The particles as a table of this tomogram."""
        return ParticleTable(
            tomo=self.tomo, class_id=self._class_id, xyz=self._xyz, rotation=self._rotation, score=self._score
        )

    def counts(self) -> dict[int, int]:
        """Particles per class id."""
        ids, counts = np.unique(self._class_id, return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts)}

    # ----------------------------------------------------------------- edits
    def add(self, class_id: int, xyz) -> int:
        """Add a particle of ``class_id`` at ``xyz`` (voxels); returns its index."""
        if class_id < 1:
            raise ValueError(f"class_id must be 1 or more (0 is background), got {class_id}")
        self._remember()
        self._xyz = np.vstack([self._xyz, np.asarray(xyz, dtype=float).reshape(1, 3)])
        self._class_id = np.append(self._class_id, int(class_id))
        self._rotation = np.concatenate([self._rotation, np.eye(3)[np.newaxis]])
        self._score = np.append(self._score, np.nan)
        return len(self._xyz) - 1

    def move(self, index: int, xyz, remember: bool = True) -> None:
        """Move particle ``index`` to ``xyz``.

        A drag moves a particle many times: remember only its first move so
        that one undo puts the particle back where the drag started.
        """
        self._check_index(index)
        if remember:
            self._remember()
        self._xyz = self._xyz.copy()
        self._xyz[index] = np.asarray(xyz, dtype=float)

    def delete(self, index: int) -> None:
        """Remove particle ``index`` (indices above it shift down by one)."""
        self._check_index(index)
        self._remember()
        keep = np.arange(len(self._xyz)) != index
        self._xyz, self._class_id = self._xyz[keep], self._class_id[keep]
        self._rotation, self._score = self._rotation[keep], self._score[keep]

    def undo(self) -> bool:
        """Undo the last add, move or delete; False when there is nothing to undo."""
        if not self._history:
            return False
        self._xyz, self._class_id, self._rotation, self._score = self._history.pop()
        return True

    def nearest(self, xyz, slice_axis: int, radii: dict[int, float], min_radius: float = 0.0) -> int | None:
        """The particle shown under ``xyz`` in a view sliced along ``slice_axis``, or None.

        See :func:`nearest_particle`.
        """
        return nearest_particle(self._xyz, self._class_id, xyz, slice_axis, radii, min_radius)

    def _remember(self) -> None:
        self._history.append((self._xyz, self._class_id, self._rotation, self._score))

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self._xyz):
            raise IndexError(f"no particle {index}: {len(self._xyz)} particles")


def nearest_particle(
    particles_xyz: np.ndarray,
    class_id: np.ndarray,
    xyz,
    slice_axis: int,
    radii: dict[int, float],
    min_radius: float = 0.0,
) -> int | None:
    """Index of the particle shown under ``xyz`` in a view sliced along ``slice_axis``, or None.

    A particle is shown in a slice as a disc: the section of a ball of its
    class radius (``radii``, voxels). ``min_radius`` (voxels) keeps small or
    off-centre sections clickable. The nearest of several hits wins.
    """
    if not len(particles_xyz):
        return None
    point = np.asarray(xyz, dtype=float)
    radius = np.array([radii.get(int(c), 0.0) for c in class_id])
    offset = np.abs(particles_xyz[:, slice_axis] - point[slice_axis])
    section = np.sqrt(np.clip(radius**2 - offset**2, 0.0, None))
    in_plane = [a for a in range(3) if a != slice_axis]
    distance = np.linalg.norm(particles_xyz[:, in_plane] - point[in_plane], axis=1)
    hit = (offset <= np.maximum(radius, min_radius)) & (distance <= np.maximum(section, min_radius))
    if not hit.any():
        return None
    return int(np.flatnonzero(hit)[np.argmin(distance[hit])])


PENDING, ACCEPTED, REJECTED = "pending", "accepted", "rejected"


class Review:
    """Picks (of a picker, with scores) being reviewed: accepted, rejected, re-classed or moved.

    Picks keep their index in the table given. They are visited in
    :attr:`order`: class by class, lowest score first (the likeliest false
    positives), picks without a score last. Changing a pick's class or
    position accepts it as corrected.

    Parameters
    ----------
    picks : ParticleTable
        The picks of all tomograms, as given by the picker.
    """

    def __init__(self, picks: ParticleTable):
        self.picks = picks
        score = np.where(np.isnan(picks.score), np.inf, picks.score)
        self.order = np.lexsort((np.arange(len(picks)), score, picks.class_id))
        self.status = np.full(len(picks), PENDING, dtype=object)
        self.class_id = np.array(picks.class_id, dtype=int)
        self.xyz = np.array(picks.xyz, dtype=float).reshape(-1, 3)

    def __len__(self) -> int:
        return len(self.picks)

    def accept(self, index: int) -> None:
        self.status[index] = ACCEPTED

    def reject(self, index: int) -> None:
        self.status[index] = REJECTED

    def reset(self, index: int) -> None:
        """Back to its picker's class and position, not reviewed."""
        self.status[index] = PENDING
        self.class_id[index] = self.picks.class_id[index]
        self.xyz[index] = self.picks.xyz[index]

    def set_class(self, index: int, class_id: int) -> None:
        """Re-class pick ``index`` (1, 2, ...): accepted as corrected."""
        if class_id < 1:
            raise ValueError(f"class_id must be 1 or more (0 is background), got {class_id}")
        self.class_id[index] = int(class_id)
        self.status[index] = ACCEPTED

    def move(self, index: int, xyz) -> None:
        """Move pick ``index`` to ``xyz`` (voxels): accepted as corrected."""
        self.xyz[index] = np.asarray(xyz, dtype=float)
        self.status[index] = ACCEPTED

    def next_pending(self, position: int) -> int | None:
        """Position in :attr:`order` of the first pick not reviewed after ``position``, wrapping; or None."""
        pending = self.status[self.order] == PENDING
        after = np.roll(pending, -(position + 1))
        if not after.any():
            return None
        return int((position + 1 + np.argmax(after)) % len(self.order))

    def counts(self) -> dict[str, int]:
        """Picks per status."""
        return {status: int(np.sum(self.status == status)) for status in (PENDING, ACCEPTED, REJECTED)}

    def of_tomogram(self, tomo: str) -> np.ndarray:
        """Indices of the picks of tomogram ``tomo``."""
        return np.flatnonzero(self.picks.tomo == tomo)

    def accepted(self) -> ParticleTable:
        """The accepted picks, with their corrected classes and positions and their scores."""
        keep = self.status == ACCEPTED
        return ParticleTable(
            tomo=self.picks.tomo[keep],
            class_id=self.class_id[keep],
            xyz=self.xyz[keep],
            rotation=self.picks.rotation[keep],
            score=self.picks.score[keep],
        )

    def rejected(self) -> ParticleTable:
        """The rejected picks, as picked: places the picker took for particles, where training can
        centre background patches (class 0 rows of a training table)."""
        return self.picks.select(self.status == REJECTED)

    # ----------------------------------------------------------------- files
    def save(self, path: PathLike) -> None:
        """Write the review's state to the JSON file ``path`` (replaced whole: never half written)."""
        state = {
            "picks": [
                {
                    "tomo": str(tomo),
                    "picked_class": int(picked_class),
                    "picked_xyz": [float(c) for c in picked_xyz],
                    "status": str(status),
                    "class": int(class_id),
                    "xyz": [float(c) for c in xyz],
                }
                for tomo, picked_class, picked_xyz, status, class_id, xyz in zip(
                    self.picks.tomo, self.picks.class_id, self.picks.xyz, self.status, self.class_id, self.xyz
                )
            ]
        }
        with io.atomic_output(path) as temporary, open(temporary, "w") as handle:
            json.dump(state, handle, indent=0)

    @staticmethod
    def saved_counts(path: PathLike) -> dict[str, int]:
        """Picks per status in the review saved in ``path``, without the picks themselves."""
        with open(path) as handle:
            statuses = [pick["status"] for pick in json.load(handle)["picks"]]
        return {status: statuses.count(status) for status in (PENDING, ACCEPTED, REJECTED)}

    @classmethod
    def resume(cls, picks: ParticleTable, path: PathLike) -> Review:
        """The review of ``picks`` saved in ``path``.

        Raises InputError when the file was saved for other picks (another
        count, tomogram, class or position of any pick).
        """
        with open(path) as handle:
            saved = json.load(handle)["picks"]
        review = cls(picks)
        same = len(saved) == len(picks) and all(
            pick["tomo"] == tomo
            and pick["picked_class"] == class_id
            and np.allclose(pick["picked_xyz"], xyz, atol=1e-3)
            for pick, tomo, class_id, xyz in zip(saved, picks.tomo, picks.class_id, picks.xyz)
        )
        if not same:
            raise InputError(
                f"{path} is the review of other picks ({len(saved)} saved, {len(picks)} given): "
                "review these picks in a new run, or give the picks this run reviewed."
            )
        for index, pick in enumerate(saved):
            if pick["status"] not in (PENDING, ACCEPTED, REJECTED):
                raise InputError(f"{path}: pick {index} has an unknown status {pick['status']!r}")
            review.status[index] = pick["status"]
            review.class_id[index] = pick["class"]
            review.xyz[index] = pick["xyz"]
        return review
