"""Second-stage classification: name the class of each pick from a box of the tomogram around it.

The U-net finds particles well but confuses classes of similar size (benchmarks/RESULTS.md). A
small 3D CNN that sees one box centred on a pick, trained on boxes around the training particles
(and, as class 0, boxes at random places off every particle), can name the class again with the
pick's position kept. Boxes are normalised with the tomogram's statistics, as the U-net's patches
(:mod:`deepfinder.core.normalize`). Training augments each box with a shift of its centre (picks
are off by a voxel or two) and the 180-degree rotations about z, y and x that keep the missing
wedge where it is (:data:`deepfinder.core.segment.WEDGE_PRESERVING_ROTATIONS`); prediction can
average the four rotations.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .model import import_tensorflow
from .normalize import normalize
from .sampling import draw_rows
from .segment import WEDGE_PRESERVING_ROTATIONS

# Class index of boxes that hold no particle centre.
BACKGROUND = 0


def cut_boxes(
    volume: np.ndarray, centres_zyx: np.ndarray, box_size: int, stats: tuple[float, float]
) -> np.ndarray:
    """Normalised cubes of edge ``box_size`` centred on ``centres_zyx`` (nearest voxel).

    Parameters
    ----------
    volume : (z, y, x) array
        Tomogram (memory-mapped is fine).
    centres_zyx : (n, 3) float array
        Box centres, voxels.
    box_size : int
        Box edge, voxels; an even edge puts the centre voxel at index ``box_size // 2``.
    stats : (mean, std)
        The tomogram's normalisation (:func:`deepfinder.core.normalize.tomogram_stats`).

    Returns
    -------
    (n, box_size, box_size, box_size) float32
        Where a box leaves the tomogram it holds 0 (the normalised mean).
    """
    centres = np.rint(np.asarray(centres_zyx, dtype=float)).astype(int).reshape(-1, 3)
    boxes = np.zeros((len(centres), box_size, box_size, box_size), dtype=np.float32)
    shape = np.array(volume.shape)
    for i, first in enumerate(centres - box_size // 2):
        low = np.maximum(first, 0)
        high = np.minimum(first + box_size, shape)
        if np.any(high <= low):
            continue
        inside = tuple(slice(a, b) for a, b in zip(low, high))
        placed = tuple(slice(a, b) for a, b in zip(low - first, high - first))
        boxes[(i,) + placed] = normalize(volume[inside], *stats)
    return boxes


def background_centres(
    occupancy: np.ndarray, n: int, clearance_voxels: int, rng: np.random.Generator
) -> np.ndarray:
    """``n`` random voxels (z, y, x) whose cube of half-edge ``clearance_voxels`` holds no
    occupied voxel (``occupancy`` > 0): centres of class-0 boxes, none near a particle, though
    such boxes still show the crowd around them."""
    found: list[np.ndarray] = []
    shape = np.array(occupancy.shape)
    while sum(len(f) for f in found) < n:
        candidates = rng.integers(clearance_voxels, shape - clearance_voxels, size=(4 * n, 3))
        free = np.array(
            [
                not np.any(
                    occupancy[tuple(slice(c - clearance_voxels, c + clearance_voxels + 1) for c in centre)]
                )
                for centre in candidates
            ]
        )
        found.append(candidates[free])
    return np.concatenate(found)[:n].astype(float)


def rotate_boxes(boxes: np.ndarray, rotation: np.ndarray) -> np.ndarray:
    """Boxes (n, z, y, x) each turned by one wedge-preserving rotation: ``rotation[i]`` 0 keeps
    box i, 1-3 turn it by 180 degrees about z, y or x. In an even box the turn moves the
    centre voxel (index ``box_size // 2``) by one voxel along the reversed axes, less than the
    shifts training sees."""
    turned = boxes.copy()
    for k, axes in enumerate(WEDGE_PRESERVING_ROTATIONS, start=1):
        chosen = rotation == k
        turned[chosen] = np.flip(boxes[chosen], tuple(axis + 1 for axis in axes))
    return turned


def augmented_batch(
    padded_boxes: np.ndarray, rows: np.ndarray, box_size: int, rng: np.random.Generator
) -> np.ndarray:
    """Boxes of edge ``box_size`` cut from ``padded_boxes[rows]`` (larger boxes around the same
    centres) at a random shift of up to their margin per axis, each turned by a random
    wedge-preserving rotation; (b, z, y, x, 1) float32."""
    margin = (padded_boxes.shape[1] - box_size) // 2
    shifts = rng.integers(0, 2 * margin + 1, size=(len(rows), 3))
    batch = np.empty((len(rows), box_size, box_size, box_size), dtype=np.float32)
    for i, (row, (z, y, x)) in enumerate(zip(rows, shifts)):
        batch[i] = padded_boxes[row, z : z + box_size, y : y + box_size, x : x + box_size]
    return rotate_boxes(batch, rng.integers(0, 1 + len(WEDGE_PRESERVING_ROTATIONS), len(rows)))[..., None]


def build_classifier(n_classes: int, box_size: int):
    """A small 3D CNN: three blocks of 3x3x3 convolutions (16, 32, 64 filters, batch
    normalisation, ReLU) each halving the box, then a dense layer of 128 and the class logits.

    Parameters
    ----------
    n_classes : int
        Output classes, background (class 0) included.
    box_size : int
        Input box edge, voxels (a multiple of 8).

    Returns
    -------
    keras.Model
        Input (batch, box, box, box, 1) float32; output (batch, n_classes) logits.
    """
    import_tensorflow()
    import keras
    from keras import layers

    if box_size % 8:
        raise ValueError(f"The box edge must be a multiple of 8, got {box_size}")
    inputs = keras.Input(shape=(box_size, box_size, box_size, 1))
    x = inputs
    for filters in (16, 32, 64):
        for _ in range(1 if filters == 16 else 2):
            x = layers.Conv3D(filters, 3, padding="same", use_bias=False, kernel_initializer="he_normal")(x)
            # A short memory of batch statistics: training runs of a few hundred steps.
            x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.Activation("relu")(x)
        x = layers.MaxPooling3D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu", kernel_initializer="he_normal")(x)
    logits = layers.Dense(n_classes)(x)
    return keras.Model(inputs, logits, name="deepfinder_box_classifier")


def train_classifier(
    model,
    padded_boxes: np.ndarray,
    labels: np.ndarray,
    box_size: int,
    *,
    steps: int,
    batch_size: int = 32,
    learning_rate: float = 1e-3,
    final_learning_rate: float = 1e-4,
    seed: int = 0,
    steps_per_epoch: int = 50,
    on_epoch_end: Callable[[int, float], bool] | None = None,
) -> list[float]:
    """Train ``model`` on augmented boxes (:func:`augmented_batch`), classes drawn in rounds
    (:func:`deepfinder.core.sampling.draw_rows`), the step size decaying geometrically from
    ``learning_rate`` to ``final_learning_rate`` over ``steps``.

    Parameters
    ----------
    model : keras.Model
        From :func:`build_classifier`, trained in place.
    padded_boxes : (n, B, B, B) float32
        Boxes around the training centres, ``B - box_size`` = twice the largest centre shift.
    labels : (n,) int array
        Class of each box (0 = background).
    box_size : int
    steps, batch_size, learning_rate, final_learning_rate, seed, steps_per_epoch
        The schedule; every ``steps_per_epoch`` steps ``on_epoch_end(epoch, mean loss)`` is
        called, and training stops early when it returns True.

    Returns
    -------
    list of float
        Mean training loss of each epoch.
    """
    tf = import_tensorflow()
    import keras

    rng = np.random.default_rng(seed)
    optimizer = keras.optimizers.Adam(learning_rate)
    loss_function = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_function(y, model(x, training=True))
        optimizer.apply_gradients(
            zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        )
        return loss

    decay = (final_learning_rate / learning_rate) ** (1 / max(steps - 1, 1))
    losses: list[float] = []
    epoch_losses: list[float] = []
    for i in range(steps):
        optimizer.learning_rate.assign(learning_rate * decay**i)
        rows = draw_rows(labels, batch_size, rng)
        epoch_losses.append(float(step(augmented_batch(padded_boxes, rows, box_size, rng), labels[rows])))
        if len(epoch_losses) == steps_per_epoch or i == steps - 1:
            losses.append(float(np.mean(epoch_losses)))
            epoch_losses = []
            if on_epoch_end is not None and on_epoch_end(len(losses), losses[-1]):
                break
    return losses


def classify_boxes(
    model, boxes: np.ndarray, average_rotations: bool = True, batch_size: int = 64
) -> np.ndarray:
    """Class probabilities (n, n_classes) of boxes (n, z, y, x), optionally averaged over the
    four wedge-preserving rotations."""
    tf = import_tensorflow()
    rotations = range(1 + len(WEDGE_PRESERVING_ROTATIONS)) if average_rotations else (0,)
    probabilities = np.zeros((len(boxes), int(model.output_shape[-1])))
    for start in range(0, len(boxes), batch_size):
        part = boxes[start : start + batch_size]
        for k in rotations:
            turned = rotate_boxes(part, np.full(len(part), k))[..., None]
            probabilities[start : start + batch_size] += tf.nn.softmax(model(turned, training=False)).numpy()
    return probabilities / len(rotations)
