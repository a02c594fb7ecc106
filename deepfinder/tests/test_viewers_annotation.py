"""What the annotation window edits and draws, checked without a display."""

import numpy as np
import pytest

from deepfinder.core.particles import ParticleTable
from deepfinder.viewers.annotation import (
    Annotation,
    canvas_image,
    canvas_sizes,
    fit_scale,
    from_canvas,
    orthoslice,
    to_canvas,
    to_grey,
)


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


def test_orthoslices_show_the_right_voxels_and_lowpass_keeps_the_mean():
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    np.testing.assert_array_equal(orthoslice(volume, "XY", 2), volume[2])
    np.testing.assert_array_equal(orthoslice(volume, "XZ", 3), volume[:, 3, :])
    np.testing.assert_array_equal(orthoslice(volume, "YZ", 1), volume[:, :, 1].T)
    noisy = np.random.default_rng(0).normal(size=(20, 30, 30)).astype(np.float32)
    smooth = orthoslice(noisy, "XY", 10, lowpass_sigma=2)
    assert smooth.std() < 0.2 * noisy[10].std()
    with pytest.raises(ValueError, match="view must be one of"):
        orthoslice(volume, "ZZ", 0)


def test_grey_levels_saturate_at_the_contrast_range():
    section = np.random.default_rng(1).normal(size=(50, 50))
    grey = to_grey(section, range_std=1.0)
    assert grey.dtype == np.uint8
    assert 0.1 < np.mean(grey == 255) < 0.25  # about 16 % above mean + 1 std
    with pytest.raises(ValueError, match="range_std must be positive"):
        to_grey(section, 0)


@pytest.mark.parametrize("view", ["XY", "XZ", "YZ"])
def test_canvas_pixels_and_voxels_agree_with_the_image(view):
    shape = (12, 20, 30)  # z, y, x
    volume = np.zeros(shape, np.float32)
    particle = np.array([21, 5, 3])  # x, y, z
    volume[particle[2], particle[1], particle[0]] = 1
    scale = fit_scale(shape, 600, 500)
    size = canvas_sizes(shape, scale)[view]
    centre = [(n - 1) / 2 for n in shape[::-1]]
    slice_index = particle[{"XY": 2, "XZ": 1, "YZ": 0}[view]]
    grey = (orthoslice(volume, view, slice_index) * 255).astype(np.uint8)
    image = canvas_image(grey, view, centre, scale, size)
    assert image.shape == size[::-1]
    column, row = to_canvas(view, particle, centre, scale, size)
    assert image[int(row), int(column)] == 255
    up = np.eye(3)[{"XY": 1, "XZ": 2, "YZ": 1}[view]]  # y and z point up on screen
    assert to_canvas(view, particle + up, centre, scale, size)[1] == pytest.approx(row - scale)
    back = from_canvas(view, column, row, slice_index, centre, scale, size)
    np.testing.assert_allclose(back, particle)
