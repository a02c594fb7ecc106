import numpy as np
import pytest

from deepfinder.core.errors import InputError
from deepfinder.core.particles import ParticleTable
from deepfinder.core.sampling import (
    check_labels_at_particles,
    draw_rows,
    make_batch,
    particles_inside,
    patch_origins,
    prefetch,
    rotate_about_tilt_axis,
    training_batches,
)

SHAPE = (40, 44, 48)


def test_bootstrap_draws_classes_uniformly():
    class_ids = np.array([1] * 90 + [2] * 9 + [3] * 1)
    rows = draw_rows(class_ids, 30_000, np.random.default_rng(0), bootstrap=True)
    fractions = np.bincount(class_ids[rows], minlength=4)[1:] / len(rows)
    np.testing.assert_allclose(fractions, 1 / 3, atol=0.02)
    # every particle of the abundant class is used, not only a few
    assert len(np.unique(rows[class_ids[rows] == 1])) == 90


def test_a_bootstrap_batch_as_large_as_the_class_count_holds_every_class():
    class_ids = np.repeat(np.arange(1, 13), [500] * 11 + [5])
    rng = np.random.default_rng(0)
    for batch_size in (12, 18):
        for _ in range(50):
            rows = draw_rows(class_ids, batch_size, rng, bootstrap=True)
            assert set(class_ids[rows]) == set(range(1, 13))


def test_without_bootstrap_classes_follow_abundance():
    class_ids = np.array([1] * 90 + [2] * 10)
    rows = draw_rows(class_ids, 20_000, np.random.default_rng(0), bootstrap=False)
    assert abs(np.mean(class_ids[rows] == 2) - 0.1) < 0.01


def test_origins_centre_patch_shift_and_stay_inside():
    rng = np.random.default_rng(1)
    centre = np.array([[20, 22, 24]])
    exact = patch_origins(centre, SHAPE, 16, 0, rng)
    np.testing.assert_array_equal(exact, [[12, 14, 16]])
    shifted = patch_origins(np.repeat(centre, 5000, axis=0), SHAPE, 16, 5, rng)
    offsets = shifted - exact
    assert offsets.min() == -5 and offsets.max() == 5
    assert len(np.unique(offsets)) == 11
    corner = patch_origins(np.array([[0, 43, 47], [39, 0, 1]]), SHAPE, 16, 13, rng)
    assert np.all(corner >= 0) and np.all(corner + 16 <= np.array(SHAPE))


def test_patch_larger_than_volume_is_refused():
    with pytest.raises(ValueError, match="larger than the volume"):
        patch_origins(np.array([[5, 5, 5]]), (40, 12, 48), 16, 0, np.random.default_rng(0))


def test_tilt_axis_rotation_is_a_rotation_not_a_mirror():
    patch = np.random.default_rng(0).random((6, 7, 8))
    rotated = rotate_about_tilt_axis(patch)
    # voxel (z, y, x) goes to (-z, y, -x): a proper rotation (determinant +1) about y
    assert rotated[0, 3, 0] == patch[5, 3, 7]
    np.testing.assert_array_equal(rotate_about_tilt_axis(rotated), patch)
    assert not np.array_equal(rotated, patch[::-1])  # not a single-axis mirror


def test_batch_normalised_with_tomogram_stats_and_labels_follow_rotation():
    rng = np.random.default_rng(2)
    volume = rng.normal(5.0, 2.0, SHAPE).astype(np.float32)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[10:14, 10:30, 10:14] = 1  # a bar near the (z, x) corner of the first patch
    x, y = make_batch(
        [volume],
        [labels],
        [(5.0, 2.0)],
        np.array([0, 0]),
        np.array([[8, 8, 8], [8, 8, 8]]),
        16,
        rotate=np.array([False, True]),
    )
    assert x.shape == (2, 16, 16, 16, 1) and x.dtype == np.float32 and y.dtype == np.uint8
    np.testing.assert_allclose(x[0, ..., 0], (volume[8:24, 8:24, 8:24] - 5.0) / 2.0, rtol=1e-6)
    np.testing.assert_array_equal(y[1], y[0][::-1, :, ::-1])
    np.testing.assert_allclose(x[1, ..., 0], x[0, ::-1, :, ::-1, 0])
    # the patch is normalised with the tomogram's statistics, not its own
    assert abs(float(x[0].mean())) < 0.1 and abs(float(x[0].std()) - 1) < 0.1


def test_training_batches_reproducible_and_about_half_rotated():
    volume = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    centres = np.array([[20.0, 22, 24]])

    def run(seed):
        return list(
            training_batches(
                [volume],
                [labels],
                [(0.0, 1.0)],
                np.array([0]),
                centres,
                np.array([1]),
                patch_size=8,
                batch_size=50,
                n_batches=4,
                rng=np.random.default_rng(seed),
                shift_voxels=0,
            )
        )

    first, again = run(3), run(3)
    for (x1, _), (x2, _) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
    x = np.concatenate([b[0] for b in first])[..., 0]
    straight = volume[16:24, 18:26, 20:28]
    n_straight = sum(np.array_equal(p, straight) for p in x)
    n_rotated = sum(np.array_equal(p, rotate_about_tilt_axis(straight)) for p in x)
    assert n_straight + n_rotated == 200
    assert 70 < n_rotated < 130


def test_particles_outside_are_counted():
    table = ParticleTable(tomo="a", class_id=1, xyz=[[1, 1, 1], [60, 1, 1], [1, 1, -3]])
    with pytest.warns(UserWarning, match="2 of 3 particles lie outside the volume of tomo_a"):
        kept = particles_inside(table, SHAPE, "tomo_a")
    assert len(kept) == 1


def test_labels_around_the_particles_are_accepted_even_off_centre():
    labels = np.zeros(SHAPE, np.int8)
    # A hollow shell of class 1 around (x, y, z) = (20, 20, 20): its centre voxel is background.
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    labels[np.abs(np.sqrt((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2) - 5) < 1] = 1
    table = ParticleTable(tomo="a", class_id=[1, 1, 0], xyz=[[20, 20, 20], [40, 5, 5], [5, 5, 5]])
    check_labels_at_particles(labels, table, patch_size=16)


def test_labels_without_a_class_around_its_particles_are_refused():
    labels = np.zeros(SHAPE, np.int8)
    labels[30:35, 30:35, 30:35] = 1  # class 1 painted away from its particles, class 2 nowhere
    table = ParticleTable(tomo="a", class_id=[2, 1, 1], xyz=[[30, 30, 30], [5, 5, 5], [8, 5, 5]])
    with pytest.raises(
        InputError,
        match="labels.mrc holds no voxel of class 1 in the 8-voxel patches centred on the 2 particle",
    ):
        check_labels_at_particles(labels, table, patch_size=8, label_source="labels.mrc")


def test_prefetch_yields_everything_in_order_and_forwards_errors():
    assert list(prefetch(iter(range(20)), depth=3)) == list(range(20))

    def failing():
        yield 1
        raise OSError("disk gone")

    stream = prefetch(failing())
    assert next(stream) == 1
    with pytest.raises(OSError, match="disk gone"):
        next(stream)


def test_prefetch_stops_when_consumer_stops():
    produced = []

    def endless():
        i = 0
        while True:
            produced.append(i)
            yield i
            i += 1

    stream = prefetch(endless(), depth=2)
    assert next(stream) == 0
    stream.close()
    count = len(produced)
    assert count <= 5


def test_patch_with_nan_is_refused():
    volume = np.zeros(SHAPE, np.float32)
    volume[30, 30, 30] = np.nan
    labels = np.zeros(SHAPE, np.uint8)
    make_batch([volume], [labels], [(0.0, 1.0)], np.array([0]), np.array([[0, 0, 0]]), 16)
    with pytest.raises(ValueError, match="NaN or infinite values in the patch at"):
        make_batch([volume], [labels], [(0.0, 1.0)], np.array([0]), np.array([[20, 20, 20]]), 16)
