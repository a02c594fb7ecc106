"""The rotations of a tomogram that keep its missing wedge and its particles' hand.

A 180-degree rotation about z, y (the tilt axis) or x keeps the missing wedge where it was and does
not mirror, so a network trained on tomograms sees a rotated patch or tile as another one of the
same kind. Training draws from them (:mod:`deepfinder.core.sampling`); segmentation can average its
scores over them (:func:`deepfinder.core.segment.prediction_head`).
"""

from __future__ import annotations

import numpy as np

#: The 180-degree rotations about z, y and x, as the (z, y, x) axes each one reverses.
WEDGE_PRESERVING_ROTATIONS = ((1, 2), (0, 2), (0, 1))
#: Index of the rotation about the tilt axis (y) in :data:`WEDGE_PRESERVING_ROTATIONS`.
TILT_AXIS = 1


def rotate_180(volume: np.ndarray, rotation: int) -> np.ndarray:
    """``volume`` (z, y, x, ...) turned by rotation ``rotation`` of :data:`WEDGE_PRESERVING_ROTATIONS`
    (a view; -1 returns it unturned)."""
    return volume if rotation < 0 else np.flip(volume, WEDGE_PRESERVING_ROTATIONS[rotation])
