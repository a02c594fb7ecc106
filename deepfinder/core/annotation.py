"""Particles of one tomogram annotated by hand: add, move, delete, undo.

The model behind the annotation window (:mod:`deepfinder.viewers.annotation_window`),
without any display. Positions are x, y, z in voxels (as in :class:`ParticleTable`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

        A particle is shown in a slice as a disc: the section of a ball of its
        class radius (``radii``, voxels). ``min_radius`` (voxels) keeps small or
        off-centre sections clickable.
        """
        if not len(self._xyz):
            return None
        point = np.asarray(xyz, dtype=float)
        radius = np.array([radii.get(int(c), 0.0) for c in self._class_id])
        offset = np.abs(self._xyz[:, slice_axis] - point[slice_axis])
        section = np.sqrt(np.clip(radius**2 - offset**2, 0.0, None))
        in_plane = [a for a in range(3) if a != slice_axis]
        distance = np.linalg.norm(self._xyz[:, in_plane] - point[in_plane], axis=1)
        hit = (offset <= np.maximum(radius, min_radius)) & (distance <= np.maximum(section, min_radius))
        if not hit.any():
            return None
        return int(np.flatnonzero(hit)[np.argmin(distance[hit])])

    def _remember(self) -> None:
        self._history.append((self._xyz, self._class_id, self._rotation, self._score))

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self._xyz):
            raise IndexError(f"no particle {index}: {len(self._xyz)} particles")
