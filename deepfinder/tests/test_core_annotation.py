"""Particles annotated by hand: edits, undo and what a click in a slice hits."""

import numpy as np
import pytest

from deepfinder.core.annotation import Annotation
from deepfinder.core.particles import ParticleTable


def _existing():
    return ParticleTable(tomo="t", class_id=[1, 2], xyz=[[10, 20, 5], [30, 8, 12]], score=[0.9, 0.4])


def test_add_move_delete_and_undo_each_step():
    annotation = Annotation("t", _existing())
    new = annotation.add(2, [1, 2, 3])
    annotation.move(new, [4, 5, 6])
    annotation.move(new, [7, 8, 9], remember=False)  # the rest of the same drag
    annotation.delete(0)
    np.testing.assert_allclose(annotation.xyz, [[30, 8, 12], [7, 8, 9]])
    assert list(annotation.table().class_id) == [2, 2]
    assert annotation.undo()  # the delete
    assert len(annotation) == 3
    assert annotation.undo()  # the whole drag at once
    np.testing.assert_allclose(annotation.xyz[new], [1, 2, 3])
    assert annotation.undo()  # the add
    assert annotation.undo() is False
    table = annotation.table()
    np.testing.assert_allclose(table.xyz, _existing().xyz)
    np.testing.assert_allclose(table.score, [0.9, 0.4])
    assert annotation.counts() == {1: 1, 2: 1}


def test_add_refuses_background_and_unknown_index():
    annotation = Annotation("t")
    with pytest.raises(ValueError, match="class_id must be 1 or more"):
        annotation.add(0, [1, 1, 1])
    with pytest.raises(IndexError, match="no particle 3"):
        annotation.delete(3)


def test_nearest_picks_the_disc_shown_in_the_slice():
    annotation = Annotation("t", _existing())
    radii = {1: 4.0, 2: 2.0}
    # Particle 0 at z = 5 is a disc of radius sqrt(16 - 9) ~ 2.6 in slice z = 8.
    assert annotation.nearest([12, 21, 8], slice_axis=2, radii=radii) == 0
    assert annotation.nearest([13, 22, 8], slice_axis=2, radii=radii) is None
    assert annotation.nearest([10, 20, 10], slice_axis=2, radii=radii) is None
    # A generous click tolerance still finds it, and from the XZ view (slice along y).
    assert annotation.nearest([13, 22, 8], slice_axis=2, radii=radii, min_radius=4) == 0
    assert annotation.nearest([30.5, 9, 12.5], slice_axis=1, radii=radii) == 1
