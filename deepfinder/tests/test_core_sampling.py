import threading
from contextlib import closing

import numpy as np
import pytest

from deepfinder.core.errors import InputError
from deepfinder.core.io import read_volume, write_volume
from deepfinder.core.particles import ParticleTable
from deepfinder.core.rotations import TILT_AXIS, WEDGE_PRESERVING_ROTATIONS, rotate_180
from deepfinder.core.sampling import (
    check_labels_at_particles,
    cut_batches,
    draw_patches,
    draw_rows,
    make_batch,
    particles_inside,
    patch_origins,
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


def test_batch_normalised_with_tomogram_stats_and_labels_follow_rotation():
    rng = np.random.default_rng(2)
    volume = rng.normal(5.0, 2.0, SHAPE).astype(np.float32)
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[10:14, 10:30, 10:14] = 1  # a bar near the (z, x) corner of the first patch
    x, y = make_batch(
        [volume],
        [labels],
        [(5.0, 2.0)],
        16,
        np.array([0, 0]),
        np.array([[8, 8, 8], [8, 8, 8]]),
        rotations=np.array([-1, TILT_AXIS]),
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
                rotations="tilt_axis",
            )
        )

    first, again = run(3), run(3)
    for (x1, _), (x2, _) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
    x = np.concatenate([b[0] for b in first])[..., 0]
    straight = volume[16:24, 18:26, 20:28]
    n_straight = sum(np.array_equal(p, straight) for p in x)
    n_rotated = sum(np.array_equal(p, rotate_180(straight, TILT_AXIS)) for p in x)
    assert n_straight + n_rotated == 200
    assert 70 < n_rotated < 130


def _batches_of_one_particle(volume, n_batches=4, **augmentation):
    return list(
        training_batches(
            [volume],
            [np.zeros(volume.shape, np.uint8)],
            [(0.0, 1.0)],
            np.array([0]),
            np.array([[20.0, 22, 24]]),
            np.array([1]),
            patch_size=8,
            batch_size=50,
            n_batches=n_batches,
            rng=np.random.default_rng(5),
            shift_voxels=0,
            **augmentation,
        )
    )


def test_three_axes_rotations_turn_patches_about_each_axis_a_quarter_of_the_time():
    volume = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    x = np.concatenate([b[0] for b in _batches_of_one_particle(volume, rotations="three_axes")])[..., 0]
    straight = volume[16:24, 18:26, 20:28]
    views = [straight] + [rotate_180(straight, k) for k in range(len(WEDGE_PRESERVING_ROTATIONS))]
    counts = [sum(np.array_equal(p, view) for p in x) for view in views]
    assert sum(counts) == 200
    assert all(30 < count < 70 for count in counts), counts


def test_added_noise_lowers_the_snr_of_patches_but_keeps_their_variance():
    rng = np.random.default_rng(1)
    volume = rng.normal(0.0, 1.0, SHAPE).astype(np.float32)
    noisy = np.concatenate(
        [b[0] for b in _batches_of_one_particle(volume, rotations="tilt_axis", added_noise=1.0)]
    )[..., 0]
    again = np.concatenate(
        [b[0] for b in _batches_of_one_particle(volume, rotations="tilt_axis", added_noise=1.0)]
    )[..., 0]
    np.testing.assert_array_equal(noisy, again)
    straight = volume[16:24, 18:26, 20:28]
    assert abs(float(noisy.std()) - float(straight.std())) < 0.05
    # the signal's share of each patch: its correlation with the clean patch, turned or not
    views = [straight, rotate_180(straight, TILT_AXIS)]
    correlation = np.mean([max(np.corrcoef(v.ravel(), p.ravel())[0, 1] for v in views) for p in noisy])
    # std s uniform in [0, 1] keeps 1 / sqrt(1 + s^2) of it: asinh(1) = 0.88 on average
    assert 0.84 < correlation < 0.92


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


def test_patch_with_nan_is_refused():
    volume = np.zeros(SHAPE, np.float32)
    volume[30, 30, 30] = np.nan
    labels = np.zeros(SHAPE, np.uint8)
    make_batch([volume], [labels], [(0.0, 1.0)], 16, np.array([0]), np.array([[0, 0, 0]]))
    with pytest.raises(ValueError, match="NaN or infinite values in the patch at"):
        make_batch([volume], [labels], [(0.0, 1.0)], 16, np.array([0]), np.array([[20, 20, 20]]))


def _sampler_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("deepfinder-patches")]


def _two_tomograms(folder):
    """Two memory-mapped noise tomograms of different shapes, their label maps and 200 particles."""
    rng = np.random.default_rng(4)
    volumes, label_maps = [], []
    for t, shape in enumerate([(40, 56, 60), (48, 44, 52)]):
        volume = rng.normal(3.0, 2.0, shape).astype(np.float32)
        volumes.append(read_volume(write_volume(folder / f"tomo{t}.mrc", volume)))
        labels = rng.integers(0, 4, shape).astype(np.int8)
        label_maps.append(read_volume(write_volume(folder / f"labels{t}.mrc", labels)))
    tomo_index = rng.integers(0, 2, 200)
    centres = np.stack([rng.uniform(0, volumes[t].shape) for t in tomo_index])
    return volumes, label_maps, [(3.0, 2.0)] * 2, tomo_index, centres, rng.integers(1, 4, 200)


def test_batches_cut_by_threads_equal_those_cut_one_at_a_time(tmp_path):
    data = _two_tomograms(tmp_path)

    def batches(workers, batches_ahead=4):
        return list(
            training_batches(
                *data,
                patch_size=16,
                batch_size=6,
                n_batches=25,
                rng=np.random.default_rng(7),
                shift_voxels=5,
                workers=workers,
                batches_ahead=batches_ahead,
            )
        )

    sequential = batches(0)
    assert len(sequential) == 25
    # the batches differ from each other (so that equality below means the same order)
    assert not np.array_equal(sequential[0][0], sequential[1][0])
    for workers, batches_ahead in ((1, 1), (2, 4), (3, 2)):
        threaded = batches(workers, batches_ahead)
        assert len(threaded) == len(sequential)
        for (x0, y0), (x1, y1) in zip(sequential, threaded):
            np.testing.assert_array_equal(x1, x0)
            np.testing.assert_array_equal(y1, y0)
    assert not _sampler_threads()


def test_batches_are_the_patches_drawn(tmp_path):
    volumes, label_maps, stats, tomo_index, centres, class_ids = _two_tomograms(tmp_path)
    rng = np.random.default_rng(2)
    patch_tomos, origins = draw_patches(
        tomo_index, centres, class_ids, [v.shape for v in volumes], 5, patch_size=16, shift_voxels=5, rng=rng
    )
    rotations = np.array([-1, 0, 1, 2, -1])
    ((x, y),) = list(cut_batches(volumes, label_maps, stats, [(patch_tomos, origins, rotations)], 16))
    for i, (t, (z0, y0, x0)) in enumerate(zip(patch_tomos, origins)):
        expected = (volumes[t][z0 : z0 + 16, y0 : y0 + 16, x0 : x0 + 16] - 3.0) / 2.0
        expected_labels = label_maps[t][z0 : z0 + 16, y0 : y0 + 16, x0 : x0 + 16]
        expected = rotate_180(expected, rotations[i])
        expected_labels = rotate_180(expected_labels, rotations[i])
        np.testing.assert_allclose(x[i, ..., 0], expected, rtol=1e-6)
        np.testing.assert_array_equal(y[i], expected_labels)


def test_an_error_while_cutting_reaches_the_consumer_at_its_batch():
    volume = np.zeros(SHAPE, np.float32)
    volume[30, 30, 30] = np.nan
    labels = np.zeros(SHAPE, np.uint8)
    one = np.array([0])
    plans = [(one, np.array([[0, 0, 0]]), None)] * 3 + [(one, np.array([[20, 20, 20]]), None)]
    stream = cut_batches([volume], [labels], [(0.0, 1.0)], plans, 16, workers=2, batches_ahead=4)
    for _ in range(3):
        x, _ = next(stream)
        assert x.shape == (1, 16, 16, 16, 1)
    with pytest.raises(ValueError, match=r"NaN or infinite values in the patch at .* \(20, 20, 20\)"):
        next(stream)
    assert not _sampler_threads()


def test_stopping_early_leaves_no_thread_and_draws_a_bounded_number_ahead():
    volume = np.random.default_rng(0).normal(size=SHAPE).astype(np.float32)
    labels = np.zeros(SHAPE, np.uint8)
    drawn = []

    def endless_plans():
        while True:
            drawn.append(len(drawn))
            yield np.array([0, 0]), np.array([[0, 0, 0], [8, 8, 8]]), None

    with closing(
        cut_batches([volume], [labels], [(0.0, 1.0)], endless_plans(), 16, workers=2, batches_ahead=3)
    ) as stream:
        for _ in range(5):
            next(stream)
            assert len(_sampler_threads()) <= 2
        # batches wait in memory for the consumer: at most 3 beyond the 5 taken
        assert len(drawn) <= 5 + 3
    assert not _sampler_threads()

    # the same when the consumer fails
    with pytest.raises(RuntimeError, match="step failed"):
        with closing(cut_batches([volume], [labels], [(0.0, 1.0)], endless_plans(), 16, workers=2)) as stream:
            next(stream)
            raise RuntimeError("step failed")
    assert not _sampler_threads()


@pytest.mark.parametrize(("workers", "batches_ahead", "named"), [(-1, 2, "workers"), (2, 0, "batches_ahead")])
def test_impossible_thread_settings_are_refused(workers, batches_ahead, named):
    with pytest.raises(ValueError, match=named):
        cut_batches([], [], [], [], 16, workers=workers, batches_ahead=batches_ahead)
