"""The annotation window's images read only the voxels they show, and show the same as the whole slice."""

import numpy as np
import pytest

from deepfinder.figures.orthoslices import VIEW_AXES, canvas_image, orthoslice, sampled_mean_std, to_grey


def _reference(volume, view, index, centre, scale, size, range_std, mean_std, lowpass):
    """The canvas image by the plain route: the whole slice, then each pixel's nearest voxel."""
    grey = to_grey(orthoslice(volume, view, index, lowpass), range_std, mean_std)
    width, height = size
    u, v, _ = VIEW_AXES[view]
    columns = np.floor((np.arange(width) + 0.5 - width / 2) / scale + centre[u] + 0.5).astype(int)
    rows = np.floor((height / 2 - np.arange(height) - 0.5) / scale + centre[v] + 0.5).astype(int)
    image = np.full((height, width), 32, np.uint8)
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            if 0 <= row < grey.shape[0] and 0 <= column < grey.shape[1]:
                image[r, c] = grey[row, column]
    return image


@pytest.mark.parametrize("view", ["XY", "XZ", "YZ"])
@pytest.mark.parametrize(
    "scale, centre, lowpass",
    [(0.37, (20, 12, 7), 0.0), (2.5, (31, 3, 10), 0.0), (0.8, (20, 12, 7), 1.5), (3.0, (5, 20, 2), 1.0)],
)
def test_canvas_image_matches_the_whole_slice(view, scale, centre, lowpass):
    volume = np.random.default_rng(1).normal(size=(15, 25, 41)).astype(np.float32)
    index = {"XY": 6, "XZ": 11, "YZ": 30}[view]
    mean_std = (0.0, 0.4) if lowpass else sampled_mean_std(volume)
    size = (37, 29)
    image = canvas_image(volume, view, index, centre, scale, size, 2.0, mean_std, lowpass)
    expected = _reference(volume, view, index, centre, scale, size, 2.0, mean_std, lowpass)
    if lowpass:
        # The filtered box spans the shown voxels and a margin: the same values inside.
        assert np.mean(np.abs(image.astype(int) - expected)) < 2
    else:
        np.testing.assert_array_equal(image, expected)


def test_a_canvas_off_the_tomogram_is_filled():
    volume = np.ones((4, 5, 6), np.float32)
    image = canvas_image(volume, "XY", 1, (100, 100, 2), 1.0, (10, 8), 3.0, fill=7)
    assert (image == 7).all()


def test_sampled_mean_std_is_close_to_the_whole_volume():
    volume = np.random.default_rng(2).normal(3.0, 2.0, size=(64, 128, 96)).astype(np.float32)
    mean, std = sampled_mean_std(volume, max_rows=256)
    assert mean == pytest.approx(3.0, abs=0.05)
    assert std == pytest.approx(2.0, rel=0.03)
