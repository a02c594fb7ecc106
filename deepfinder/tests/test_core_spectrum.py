import numpy as np
import pytest
from scipy import ndimage

from deepfinder.core.spectrum import N_BINS, amplitude_profile, match_amplitude_profile


def noise(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def specimen(shape=(48, 96, 96), seed=0):
    """Blobs of two sizes in noise: structure at several spatial frequencies."""
    rng = np.random.default_rng(seed)
    density = np.zeros(shape, np.float32)
    for sigma in (1.0, 3.0):
        points = np.zeros(shape, np.float32)
        points[tuple(rng.integers(0, size, 60) for size in shape)] = 1
        density += ndimage.gaussian_filter(points, sigma) * sigma**3
    return density / density.std() + 0.5 * noise(shape, seed + 1)


def correlation(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("shape", [(80, 128, 128), (20, 100, 90)])
def test_white_noise_has_a_flat_unit_profile_also_in_a_thin_tomogram(shape):
    profile = amplitude_profile(noise(shape) * 7 + 3)
    assert profile.shape == (N_BINS,) and profile[0] == 0
    deviation = np.abs(profile[N_BINS // 8 : N_BINS // 2] - 1)
    assert deviation.mean() < 0.05 and deviation.max() < 0.2


def test_a_blurred_tomogram_loses_its_high_frequencies():
    sharp = amplitude_profile(specimen())
    blurred = amplitude_profile(ndimage.gaussian_filter(specimen(), 1.5))
    assert np.all(blurred[N_BINS // 4 : N_BINS // 2] < 0.5 * sharp[N_BINS // 4 : N_BINS // 2])


def test_matching_takes_a_tomogram_imaged_otherwise_back_towards_the_training_look():
    truth = specimen(seed=3)
    # Another imaging: less high-resolution signal and more noise.
    imaged_otherwise = ndimage.gaussian_filter(truth, 1.0) + 0.3 * noise(truth.shape, seed=9)
    # The same specimen as the training data imaged it: low frequencies, where the specimen's
    # own content dominates, stay comparable.
    target = amplitude_profile(truth)
    matched = match_amplitude_profile(imaged_otherwise, target)
    assert matched.dtype == np.float32 and matched.shape == truth.shape
    assert abs(matched.mean()) < 1e-4 and abs(matched.std() - 1) < 1e-4
    after = amplitude_profile(matched)
    band = slice(2, N_BINS // 2)
    before_error = np.abs(np.log(amplitude_profile(imaged_otherwise)[band] / target[band])).mean()
    after_error = np.abs(np.log(after[band] / target[band])).mean()
    assert after_error < 0.06 and before_error > 0.2


def test_matching_a_tomogram_to_its_own_profile_changes_it_little():
    volume = specimen(seed=4)
    matched = match_amplitude_profile(volume, amplitude_profile(volume))
    assert correlation(matched, volume) > 0.99
    assert correlation(match_amplitude_profile(volume, amplitude_profile(specimen(seed=8))), volume) > 0.95


def test_a_profile_of_another_length_is_refused():
    with pytest.raises(ValueError, match=f"{N_BINS} finite values"):
        match_amplitude_profile(noise((32, 32, 32)), np.ones(10))
