"""What the annotation window shows and edits, without any display: pure numpy.

The particles of one tomogram with add / move / delete / undo, the class list,
orthoslices (optionally low-pass filtered) turned into grey images, and the
mapping between voxels and canvas pixels of the three linked views.

Positions are x, y, z in voxels (as in :class:`ParticleTable`); arrays are
(z, y, x). Each view has an in-plane horizontal axis ``u``, a vertical axis
``v`` (pointing up on screen, as Scipion's bottom-left-corner convention) and
a slice axis ``w``, given as indices into x, y, z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from ..core.particles import ParticleTable

#: (u, v, w) of each view, as indices into (x, y, z).
VIEW_AXES = {"XY": (0, 1, 2), "XZ": (0, 2, 1), "YZ": (2, 1, 0)}

PALETTE = (
    "#e6194b",
    "#3cb44b",
    "#4363d8",
    "#f58231",
    "#911eb4",
    "#42d4f4",
    "#f032e6",
    "#bfef45",
    "#fabed4",
    "#469990",
)


@dataclass
class ParticleClass:
    """A class of particles as annotated: its name, display colour and radius in voxels."""

    name: str
    colour: str
    radius_voxels: float


def default_colour(class_id: int) -> str:
    """Colour of class ``class_id`` (1, 2, ...) until the user picks another."""
    return PALETTE[(class_id - 1) % len(PALETTE)]


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


# --------------------------------------------------------------------------- images


def orthoslice(volume: np.ndarray, view: str, index: int, lowpass_sigma: float = 0.0) -> np.ndarray:
    """The slice of ``volume`` (z, y, x) shown in ``view``, as a (v, u) float32 array.

    ``lowpass_sigma`` (voxels) > 0 applies a 3D Gaussian low-pass: it is
    computed on a slab just thick enough around the slice, so the cost does
    not grow with the tomogram thickness.
    """
    if view not in VIEW_AXES:
        raise ValueError(f"view must be one of {sorted(VIEW_AXES)}, got {view!r}")
    slice_axis = 2 - VIEW_AXES[view][2]
    size = volume.shape[slice_axis]
    index = int(np.clip(index, 0, size - 1))
    half = int(np.ceil(3 * lowpass_sigma)) if lowpass_sigma > 0 else 0
    start, stop = max(0, index - half), min(size, index + half + 1)
    slab = np.asarray(np.take(volume, np.arange(start, stop), axis=slice_axis), dtype=np.float32)
    if lowpass_sigma > 0:
        slab = gaussian_filter(slab, lowpass_sigma, mode="nearest")
    section = np.take(slab, index - start, axis=slice_axis)
    # (z, y) for the YZ view: transpose to (y, z) so rows are v and columns u.
    return section.T if view == "YZ" else section


def to_grey(section: np.ndarray, range_std: float) -> np.ndarray:
    """uint8 image showing ``section`` from mean - range_std * std (black) to mean + range_std * std."""
    if range_std <= 0:
        raise ValueError(f"range_std must be positive, got {range_std}")
    mean, std = float(section.mean()), float(section.std()) or 1.0
    low = mean - range_std * std
    scaled = (section - low) / (2 * range_std * std)
    return (np.clip(scaled, 0.0, 1.0) * 255).astype(np.uint8)


def fit_scale(shape_zyx: tuple[int, int, int], width: int, height: int) -> float:
    """Pixels per voxel showing the whole tomogram in the three views laid out as

    ``XY | YZ`` over ``XZ``, in at most ``width`` x ``height`` pixels.
    """
    nz, ny, nx = shape_zyx
    return min(width / (nx + nz), height / (ny + nz))


def canvas_sizes(shape_zyx: tuple[int, int, int], scale: float) -> dict[str, tuple[int, int]]:
    """(width, height) in pixels of each view's canvas at ``scale`` pixels per voxel."""
    nz, ny, nx = shape_zyx
    return {
        "XY": (round(nx * scale), round(ny * scale)),
        "XZ": (round(nx * scale), round(nz * scale)),
        "YZ": (round(nz * scale), round(ny * scale)),
    }


def to_canvas(view: str, xyz, centre_xyz, scale: float, canvas_size: tuple[int, int]) -> np.ndarray:
    """Canvas pixel (column, row) of the point ``xyz`` (voxels) in ``view``.

    The view shows ``centre_xyz`` in the middle of the canvas, ``scale`` pixels
    per voxel, ``v`` pointing up. Voxel i covers pixels of i - 0.5 to i + 0.5.
    """
    u, v, _ = VIEW_AXES[view]
    xyz, centre = np.asarray(xyz, dtype=float), np.asarray(centre_xyz, dtype=float)
    width, height = canvas_size
    return np.array(
        [(xyz[..., u] - centre[u]) * scale + width / 2, height / 2 - (xyz[..., v] - centre[v]) * scale]
    )


def from_canvas(
    view: str,
    column: float,
    row: float,
    slice_index: float,
    centre_xyz,
    scale: float,
    canvas_size: tuple[int, int],
) -> np.ndarray:
    """The point (x, y, z, voxels) under canvas pixel (column, row) of ``view``."""
    u, v, w = VIEW_AXES[view]
    width, height = canvas_size
    xyz = np.zeros(3)
    xyz[u] = (column - width / 2) / scale + centre_xyz[u]
    xyz[v] = (height / 2 - row) / scale + centre_xyz[v]
    xyz[w] = slice_index
    return xyz


def canvas_image(
    grey: np.ndarray, view: str, centre_xyz, scale: float, canvas_size: tuple[int, int], fill: int = 32
) -> np.ndarray:
    """The (height, width) uint8 image of a canvas showing the (v, u) slice ``grey``.

    Each canvas pixel takes its nearest voxel; pixels off the tomogram are ``fill``.
    """
    width, height = canvas_size
    u, v, _ = VIEW_AXES[view]
    columns = np.floor((np.arange(width) + 0.5 - width / 2) / scale + centre_xyz[u] + 0.5).astype(int)
    rows = np.floor((height / 2 - np.arange(height) - 0.5) / scale + centre_xyz[v] + 0.5).astype(int)
    inside = (
        (rows[:, None] >= 0)
        & (rows[:, None] < grey.shape[0])
        & (columns[None, :] >= 0)
        & (columns[None, :] < grey.shape[1])
    )
    image = grey[
        np.clip(rows, 0, grey.shape[0] - 1)[:, None], np.clip(columns, 0, grey.shape[1] - 1)[None, :]
    ]
    return np.where(inside, image, np.uint8(fill)).astype(np.uint8)
