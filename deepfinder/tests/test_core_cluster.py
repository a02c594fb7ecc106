import numpy as np
import pytest

from deepfinder.core.cluster import cluster_labels, find_clusters
from deepfinder.core.particles import ParticleTable
from deepfinder.core.targets import sphere_targets

SHAPE = (40, 48, 64)
RADII = {1: 3.0, 2: 5.0, 3: 7.0}


def balls(xyz, class_id):
    truth = ParticleTable(tomo="t", class_id=class_id, xyz=xyz)
    return sphere_targets(SHAPE, truth, RADII), truth


def nearest_error(found: ParticleTable, truth: ParticleTable) -> np.ndarray:
    """Distance from each true particle to the closest found one of its class."""
    return np.array(
        [
            np.min(np.linalg.norm(found.xyz[found.class_id == k] - p, axis=1))
            for p, k in zip(truth.xyz, truth.class_id)
        ]
    )


def test_isolated_and_touching_balls_of_several_sizes_are_found_at_sub_voxel_precision():
    xyz = [
        [10.3, 10.0, 10.0],  # isolated, class 1
        [30.0, 12.0, 20.0],
        [42.5, 12.0, 20.0],  # two class-2 balls touching (5 + 5 + 2.5)
        [48.0, 34.0, 20.6],
        [48.0, 34.0, 31.1],  # class 3 touching a class 1 ball (7 + 3 + 0.5)
        [15.0, 36.0, 30.0],
    ]  # isolated, class 3
    labels, truth = balls(xyz, [1, 2, 2, 3, 1, 3])
    found = cluster_labels(labels, RADII, tomo="t")
    assert len(found) == len(truth)
    assert sorted(found.class_id) == sorted(truth.class_id)
    assert nearest_error(found, truth).max() < 0.5
    assert set(found.tomo) == {"t"}


def test_absent_class_gives_no_particles_and_does_not_disturb_the_others():
    labels, truth = balls([[12, 12, 12], [40, 30, 20]], [1, 3])  # class 2 absent
    found = cluster_labels(labels, RADII)
    assert sorted(found.class_id) == [1, 3]
    assert nearest_error(found, truth).max() < 0.1


def test_sizes_scores_and_minimum_size_per_class():
    labels, truth = balls([[12, 12, 12], [40, 30, 20]], [1, 2])
    clusters = find_clusters(labels, RADII)
    expected_sizes = [np.count_nonzero(labels == 1), np.count_nonzero(labels == 2)]
    np.testing.assert_array_equal(clusters.sizes, expected_sizes)
    np.testing.assert_array_equal(clusters.particles.score, expected_sizes)  # size is the score
    dropped = cluster_labels(labels, RADII, min_cluster_size={1: expected_sizes[0] + 1})
    assert list(dropped.class_id) == [2]


def test_score_is_the_mean_class_score_over_the_particle():
    labels, _ = balls([[12, 12, 12], [40, 30, 20]], [1, 2])
    score_1 = np.where(labels == 1, 0.8, 0.1).astype(np.float16)
    score_2 = np.where(labels == 2, 0.6, 0.2).astype(np.float16)
    found = cluster_labels(labels, RADII, score_maps={1: score_1, 2: score_2})
    np.testing.assert_allclose(found.score, [0.8, 0.6], atol=1e-3)


def test_particle_with_mixed_labels_is_one_particle_of_the_majority_class():
    labels, truth = balls([[30, 24, 20]], [3])
    top = labels[:17]
    top[top > 0] = 2  # the top slices of the ball mislabelled
    found = cluster_labels(labels, RADII)
    assert list(found.class_id) == [3]
    assert nearest_error(found, truth)[0] < 2.0


def test_a_split_off_piece_merged_into_a_larger_particle_is_dropped_cleanly():
    # Two touching class-1 balls: mean-shift splits them, and the second piece lies inside the
    # radius of a class-3 particle next to it, which absorbs it as a wrong-class fragment.
    labels, _ = balls([[20, 24, 34], [20, 24, 22], [20, 24, 28]], [3, 1, 1])
    found = cluster_labels(labels, RADII)
    assert sorted(found.class_id) == [1, 3]


def test_empty_label_map_gives_an_empty_table():
    found = find_clusters(np.zeros(SHAPE, np.uint8), RADII)
    assert len(found.particles) == 0 and len(found.sizes) == 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"radius_voxels": {1: 0.0, 2: 5.0}}, "radius_voxels must be > 0"),
        ({"radius_voxels": {1: 3.0}}, "no radius"),
        ({"bandwidth_voxels": {1: -1.0, 2: 2.0}}, "bandwidth_voxels must be > 0"),
        ({"min_cluster_size": {1: -5}}, "min_cluster_size"),
        ({"score_maps": {1: np.zeros((4, 4, 4))}}, "Score map of class 1 has shape"),
    ],
)
def test_bad_input_raises_a_clear_error(kwargs, message):
    labels, _ = balls([[12, 12, 12], [40, 30, 20]], [1, 2])
    with pytest.raises(ValueError, match=message):
        find_clusters(labels, **{"radius_voxels": RADII, **kwargs})


def test_float_label_map_is_refused():
    with pytest.raises(ValueError, match="integer"):
        cluster_labels(np.zeros(SHAPE, np.float32), RADII)


def test_a_crowd_of_27_touching_balls_gives_27_particles_at_their_centres():
    # A 3 x 3 x 3 block of class-2 balls (radius 5) 11 voxels apart, surfaces in contact: one blob.
    xyz = [[9 + 11 * i, 8 + 11 * j, 8 + 11 * k] for i in range(3) for j in range(3) for k in range(3)]
    labels, truth = balls(xyz, [2] * 27)
    found = cluster_labels(labels, RADII)
    assert len(found) == 27
    assert set(found.class_id) == {2}
    assert nearest_error(found, truth).max() < 0.5


def test_a_label_map_labelled_mostly_as_particles_is_warned_about(caplog):
    # An untrained model labels most voxels; real particles leave most of a tomogram background.
    rng = np.random.default_rng(0)
    untrained = rng.integers(0, 4, size=(16, 16, 16))
    with caplog.at_level("WARNING", logger="deepfinder"):
        cluster_labels(untrained, RADII, tomo="tomo_untrained")
    assert "75 % of the voxels of label map tomo_untrained are labelled as particles" in caplog.text

    caplog.clear()
    labels, _ = balls([[12, 12, 12], [40, 30, 20]], [1, 3])
    with caplog.at_level("WARNING", logger="deepfinder"):
        cluster_labels(labels, RADII, tomo="t")
    assert "labelled as particles" not in caplog.text
