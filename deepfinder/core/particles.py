"""The particle table: one type used by every stage of the engine."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial.transform import Rotation


def _identity_rotations(n: int) -> np.ndarray:
    return np.broadcast_to(np.eye(3), (n, 3, 3)).copy()


@dataclass
class ParticleTable:
    """Particles of one or more tomograms.

    Attributes
    ----------
    tomo : (n,) str array
        Tomogram identifier of each particle (a Scipion tsId, a file stem...).
    class_id : (n,) int array
        Class label, 1..Ncl-1 (0 is background and never a particle; a training table may hold
        background points of class 0).
    xyz : (n, 3) float array
        Position in voxels, x, y, z, origin at the centre of the first voxel.
    rotation : (n, 3, 3) float array
        Rotation matrix, in (x, y, z) axis order, taking the particle's
        reference frame to the tomogram frame: a template point ``p`` (relative
        to the template centre) lies at ``xyz + rotation @ p``.
    score : (n,) float array
        Confidence; NaN where unknown.
    """

    tomo: np.ndarray
    class_id: np.ndarray
    xyz: np.ndarray
    rotation: np.ndarray = field(default=None)
    score: np.ndarray = field(default=None)

    def __post_init__(self):
        self.xyz = np.asarray(self.xyz, dtype=float).reshape(-1, 3)
        n = len(self.xyz)
        self.tomo = np.asarray(np.broadcast_to(np.asarray(self.tomo, dtype=str), (n,)))
        self.class_id = np.asarray(np.broadcast_to(np.asarray(self.class_id, dtype=int), (n,)))
        if self.rotation is None:
            self.rotation = _identity_rotations(n)
        self.rotation = np.asarray(self.rotation, dtype=float).reshape(n, 3, 3)
        if self.score is None:
            self.score = np.full(n, np.nan)
        self.score = np.asarray(np.broadcast_to(np.asarray(self.score, dtype=float), (n,))).copy()

    def __len__(self) -> int:
        return len(self.xyz)

    @classmethod
    def empty(cls) -> ParticleTable:
        return cls(tomo=np.empty(0, dtype=str), class_id=np.empty(0, dtype=int), xyz=np.empty((0, 3)))

    @classmethod
    def concat(cls, tables: list[ParticleTable]) -> ParticleTable:
        tables = [t for t in tables if len(t)]
        if not tables:
            return cls.empty()
        return cls(
            tomo=np.concatenate([t.tomo for t in tables]),
            class_id=np.concatenate([t.class_id for t in tables]),
            xyz=np.concatenate([t.xyz for t in tables]),
            rotation=np.concatenate([t.rotation for t in tables]),
            score=np.concatenate([t.score for t in tables]),
        )

    def select(self, mask) -> ParticleTable:
        """Rows picked by a boolean mask or an index array."""
        return ParticleTable(
            tomo=self.tomo[mask],
            class_id=self.class_id[mask],
            xyz=self.xyz[mask],
            rotation=self.rotation[mask],
            score=self.score[mask],
        )

    def of_tomogram(self, tomo: str) -> ParticleTable:
        return self.select(self.tomo == tomo)

    def of_class(self, class_id: int) -> ParticleTable:
        return self.select(self.class_id == class_id)

    @property
    def zyx(self) -> np.ndarray:
        """Positions as (z, y, x) array indices (float)."""
        return self.xyz[:, ::-1]

    def euler_zxz(self) -> np.ndarray:
        """(phi, theta, psi) in degrees, ZXZ convention of DeepFinder/PyTom/SHREC object lists.

        ``rotation = Rz(psi) @ Rx(theta) @ Rz(phi)``.
        """
        return euler_angles(self.rotation, "zxz")


def euler_angles(rotation: np.ndarray, sequence: str) -> np.ndarray:
    """Euler angles in degrees of (n, 3, 3) rotation matrices, in scipy's ``sequence`` notation."""
    if not len(rotation):
        return np.empty((0, 3))
    with warnings.catch_warnings():
        # At gimbal lock (e.g. no rotation) scipy picks one of the equivalent angle sets: fine.
        warnings.filterwarnings("ignore", message="Gimbal lock")
        return Rotation.from_matrix(rotation).as_euler(sequence, degrees=True)


def rotations_from_euler_zxz(phi, theta, psi) -> np.ndarray:
    """Rotation matrices ``Rz(psi) @ Rx(theta) @ Rz(phi)`` from angles in degrees."""
    angles = np.stack(np.broadcast_arrays(phi, theta, psi), axis=-1).reshape(-1, 3)
    if not len(angles):
        return np.empty((0, 3, 3))
    return Rotation.from_euler("zxz", angles, degrees=True).as_matrix()
