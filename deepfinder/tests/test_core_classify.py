import numpy as np

from deepfinder.core.classify import (
    augmented_batch,
    background_centres,
    build_classifier,
    classify_boxes,
    cut_boxes,
    rotate_boxes,
    train_classifier,
)


def test_boxes_are_centred_on_the_nearest_voxel_and_zero_outside_the_tomogram():
    volume = np.arange(10 * 12 * 14, dtype=np.float32).reshape(10, 12, 14)
    boxes = cut_boxes(volume, np.array([[5.2, 6.0, 6.8], [0.0, 0.0, 0.0]]), 4, (0.0, 1.0))
    assert boxes[0, 2, 2, 2] == volume[5, 6, 7]
    np.testing.assert_array_equal(boxes[0], volume[3:7, 4:8, 5:9])
    assert np.all(boxes[1, :2] == 0) and np.all(boxes[1, :, :2] == 0) and np.all(boxes[1, :, :, :2] == 0)
    np.testing.assert_array_equal(boxes[1, 2:, 2:, 2:], volume[:2, :2, :2])


def test_background_centres_keep_clear_of_particles():
    occupancy = np.zeros((30, 30, 30), dtype=np.int16)
    occupancy[10:20, 10:20, 10:20] = 1
    centres = background_centres(occupancy, 50, 2, np.random.default_rng(0)).astype(int)
    assert len(centres) == 50
    for z, y, x in centres:
        assert not occupancy[z - 2 : z + 3, y - 2 : y + 3, x - 2 : x + 3].any()


def test_rotations_turn_boxes_by_180_degrees_without_mirroring():
    boxes = np.random.default_rng(0).random((4, 4, 4, 4)).astype(np.float32)
    turned = rotate_boxes(boxes, np.arange(4))
    np.testing.assert_array_equal(turned[0], boxes[0])
    np.testing.assert_array_equal(turned[1], boxes[1][:, ::-1, ::-1])  # about z
    np.testing.assert_array_equal(turned[2], boxes[2][::-1, :, ::-1])  # about y, the tilt axis
    np.testing.assert_array_equal(turned[3], boxes[3][::-1, ::-1, :])  # about x


def test_augmented_boxes_are_shifted_by_at_most_the_margin():
    padded = np.zeros((1, 12, 12, 12), dtype=np.float32)
    padded[0, 6, 6, 6] = 1  # the centre voxel of the padded box
    batch = augmented_batch(padded, np.zeros(200, dtype=int), 8, np.random.default_rng(0))
    assert batch.shape == (200, 8, 8, 8, 1)
    where = np.argwhere(batch[..., 0] == 1)[:, 1:]
    assert len(where) == 200
    # centre 4 of the box shifted by up to 2, then maybe reversed (index 7 - i)
    assert where.min() >= 1 and where.max() <= 6
    assert len(np.unique(where, axis=0)) > 50


def test_the_classifier_learns_to_tell_a_ball_from_a_rod_in_noise():
    rng = np.random.default_rng(0)
    grid = np.indices((12, 12, 12)) - 6
    ball = (np.sum(grid**2, axis=0) <= 9).astype(np.float32)
    rod = ((grid[1] ** 2 + grid[2] ** 2 <= 2) & (np.abs(grid[0]) <= 4)).astype(np.float32)

    def boxes(n):
        labels = rng.integers(0, 3, n)
        shapes = np.stack([np.zeros_like(ball), ball, rod])[labels]
        return shapes + rng.normal(0, 0.5, shapes.shape).astype(np.float32), labels

    train_boxes, train_labels = boxes(300)
    model = build_classifier(3, 8)
    losses = train_classifier(
        model, train_boxes, train_labels, 8, steps=80, batch_size=16, steps_per_epoch=20
    )
    assert losses[-1] < losses[0]
    test_boxes, test_labels = boxes(60)
    probabilities = classify_boxes(model, test_boxes[:, 2:10, 2:10, 2:10])
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, rtol=1e-5)
    assert np.mean(np.argmax(probabilities, axis=1) == test_labels) > 0.9
