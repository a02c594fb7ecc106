"""Consensus of several pickers: which particles each found, and which all found.

The paper's S_E (expert/template matching) vs S_DF (DeepFinder) analysis: the
pickers' particles are matched one-to-one within a distance, per tomogram and
class, giving one row per physical particle and who found it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .evaluate import match_by_distance
from .particles import ParticleTable


@dataclass
class Consensus:
    """Particles of all pickers merged, with who found each.

    Attributes
    ----------
    union : ParticleTable
        One row per particle found by at least one picker: the mean position of
        its matched picks, the orientation of the first picker that found it and
        the highest of their scores.
    found_by : (n, n_pickers) bool array
        ``found_by[i, k]``: picker ``k`` found particle ``i``.
    """

    union: ParticleTable
    found_by: np.ndarray

    def intersection(self) -> ParticleTable:
        """Particles that every picker found."""
        return self.union.select(self.found_by.all(axis=1))

    def only(self, picker: int) -> ParticleTable:
        """Particles that picker ``picker`` found and no other did."""
        alone = self.found_by[:, picker] & (self.found_by.sum(axis=1) == 1)
        return self.union.select(alone)


def consensus(pickers: Sequence[ParticleTable], tolerance_voxels: float) -> Consensus:
    """Match the particles of several pickers within ``tolerance_voxels``, one-to-one.

    Picks are matched only within the same tomogram and class. Pickers are
    merged in order: each one's picks are matched to the particles merged so
    far, and unmatched picks become new particles.
    """
    if not pickers:
        raise ValueError("Give the particles of at least one picker")
    if not tolerance_voxels > 0:
        raise ValueError(f"tolerance_voxels must be > 0, got {tolerance_voxels}")
    union = pickers[0].select(slice(None))
    found_by = np.zeros((len(union), len(pickers)), dtype=bool)
    found_by[:, 0] = True
    n_picks = np.ones(len(union))
    for k, picks in enumerate(pickers[1:], start=1):
        match = match_by_distance(picks, union, tolerance_voxels).detected_match
        matched = match >= 0
        rows = match[matched]
        # Running mean of the positions of the picks of one particle.
        union.xyz[rows] += (picks.xyz[matched] - union.xyz[rows]) / (n_picks[rows] + 1)[:, None]
        n_picks[rows] += 1
        union.score[rows] = np.fmax(union.score[rows], picks.score[matched])
        found_by[rows, k] = True
        new = picks.select(~matched)
        union = ParticleTable.concat([union, new])
        new_rows = np.zeros((len(new), len(pickers)), dtype=bool)
        new_rows[:, k] = True
        found_by = np.concatenate([found_by, new_rows])
        n_picks = np.concatenate([n_picks, np.ones(len(new))])
    return Consensus(union=union, found_by=found_by)
