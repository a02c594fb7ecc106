"""Orthoslices as grey images and the voxel / canvas pixel mapping of the annotation window's views."""

import numpy as np
import pytest

from deepfinder.figures.orthoslices import (
    canvas_image,
    canvas_sizes,
    fit_scale,
    from_canvas,
    orthoslice,
    to_canvas,
    to_grey,
)


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
    image = canvas_image(volume, view, slice_index, centre, scale, size, range_std=1.0, mean_std=(0.5, 0.5))
    assert image.shape == size[::-1]
    column, row = to_canvas(view, particle, centre, scale, size)
    assert image[int(row), int(column)] == 255
    up = np.eye(3)[{"XY": 1, "XZ": 2, "YZ": 1}[view]]  # y and z point up on screen
    assert to_canvas(view, particle + up, centre, scale, size)[1] == pytest.approx(row - scale)
    back = from_canvas(view, column, row, slice_index, centre, scale, size)
    np.testing.assert_allclose(back, particle)
