import numpy as np
import pytest

from deepfinder.core.rotations import TILT_AXIS, WEDGE_PRESERVING_ROTATIONS, rotate_180


@pytest.mark.parametrize("rotation", range(len(WEDGE_PRESERVING_ROTATIONS)))
def test_each_rotation_is_a_half_turn_not_a_mirror(rotation):
    volume = np.random.default_rng(0).random((6, 7, 8))
    turned = rotate_180(volume, rotation)
    np.testing.assert_array_equal(rotate_180(turned, rotation), volume)
    # two axes reversed: determinant +1, the particles' hand is kept
    reversed_axes = [axis for axis in range(3) if not np.array_equal(np.flip(turned, axis), volume)]
    assert len(reversed_axes) == 3 and len(WEDGE_PRESERVING_ROTATIONS[rotation]) == 2


def test_the_tilt_axis_rotation_sends_z_y_x_to_minus_z_y_minus_x():
    volume = np.random.default_rng(0).random((6, 7, 8))
    assert rotate_180(volume, TILT_AXIS)[0, 3, 0] == volume[5, 3, 7]
    np.testing.assert_array_equal(rotate_180(volume, -1), volume)


@pytest.mark.parametrize("rotation", range(len(WEDGE_PRESERVING_ROTATIONS)))
def test_the_rotations_keep_the_missing_wedge_where_it_was(rotation):
    # White noise with the missing wedge of tilts +-60 degrees about y: no Fourier components
    # where |kz| > tan(60) |kx|.
    n = 32
    spectrum = np.fft.fftn(np.random.default_rng(1).normal(size=(n, n, n)))
    kz, _, kx = np.meshgrid(*[np.fft.fftfreq(n)] * 3, indexing="ij")
    wedge = np.abs(kz) > np.tan(np.radians(60)) * np.abs(kx)
    volume = np.fft.ifftn(np.where(wedge, 0, spectrum)).real
    # a flip maps frequency k to -k (with a phase): the wedge, symmetric in kz and kx, maps onto itself
    turned = np.fft.fftn(np.ascontiguousarray(rotate_180(volume, rotation)))
    assert np.abs(turned[wedge]).max() < 1e-9 * np.abs(turned).max()
    assert np.abs(turned[~wedge]).min() > 0
