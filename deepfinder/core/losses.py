"""The training losses and the voxel scores of validation, in ``keras.ops`` (any Keras backend).

Every loss is made of sums over the voxels of a batch (:func:`loss_sums`), so that devices
that each hold a part of a batch add up their parts' sums and compute the loss of the whole
batch (see :mod:`deepfinder.core.multi_device`).
"""

from __future__ import annotations

import numpy as np

from .model import import_keras


def soft_dice_loss(truth, logits):
    """1 - mean over classes of the soft Dice coefficient, summed over the batch.

    ``truth`` is one-hot and ``logits`` the network's pre-softmax output, both
    (batch, z, y, x, classes). A smoothing term of 1 voxel keeps classes absent
    from a batch defined; such a class scores 1 / (1 + its predicted volume), so
    the batch also pushes down its false positives (see benchmarks/RESULTS.md for
    a run that averaged only the classes present).
    """
    return loss_of_sums("dice", loss_sums(truth, logits))


def cross_entropy_loss(truth, logits):
    """Mean voxel-wise categorical cross-entropy (``truth`` one-hot, ``logits`` pre-softmax).

    Computed from the logits, not from clipped probabilities: a voxel whose true
    class got a probability of 1e-30 still pulls it up with full strength, so a
    network that drifted to all-background recovers.
    """
    return loss_of_sums("cross_entropy", loss_sums(truth, logits))


def dice_cross_entropy_loss(truth, logits):
    """Sum of :func:`soft_dice_loss` and :func:`cross_entropy_loss`.

    Cross-entropy alone is dominated by background and large particles, so thin
    classes are learnt late; Dice alone learns slowly at the paper's step size
    and can collapse to all-background at larger ones. The sum learns every
    class early and tolerates a step size of 1e-3.
    """
    return loss_of_sums("dice_cross_entropy", loss_sums(truth, logits))


def loss_sums(truth, logits) -> dict:
    """The sums over the voxels of a batch that its losses are made of (:func:`loss_of_sums`).

    ``truth`` is one-hot and ``logits`` the network's pre-softmax output, both
    (batch, z, y, x, classes) (any shape ending with the classes). Per class:
    ``overlap`` of truth and softmax scores, and their ``total``; for all voxels:
    their ``cross_entropy`` and their number (``voxels``). The sums of the parts
    of a batch add up to those of the batch.
    """
    ops = import_keras().ops
    scores = ops.softmax(logits, axis=-1)
    axes = tuple(range(len(truth.shape) - 1))  # all but the classes
    per_class = ops.sum(truth, axes)
    return {
        "overlap": ops.sum(truth * scores, axes),
        "total": per_class + ops.sum(scores, axes),
        "cross_entropy": ops.sum(ops.categorical_crossentropy(truth, logits, from_logits=True)),
        # One-hot: every voxel counts once, whatever the batch's (possibly unknown) shape.
        "voxels": ops.sum(per_class),
    }


def loss_of_sums(loss: str, sums: dict):
    """The loss ``loss`` (a name of :data:`~deepfinder.core.settings.LOSSES`) of a batch from its
    :func:`loss_sums`."""
    ops = import_keras().ops
    dice = 1.0 - ops.mean((2.0 * sums["overlap"] + 1.0) / (sums["total"] + 1.0))
    cross_entropy = sums["cross_entropy"] / sums["voxels"]
    return {"dice": dice, "cross_entropy": cross_entropy, "dice_cross_entropy": dice + cross_entropy}[loss]


def validation_sums(truth, logits) -> tuple[dict, tuple]:
    """The :func:`loss_sums` of a batch and its per-class voxel counts (true positives, predicted,
    actual), which add up over batches and devices (:func:`voxel_scores`)."""
    ops = import_keras().ops
    predicted = ops.one_hot(ops.argmax(logits, axis=-1), truth.shape[-1])
    axes = tuple(range(len(truth.shape) - 1))
    counts = (ops.sum(truth * predicted, axes), ops.sum(predicted, axes), ops.sum(truth, axes))
    return loss_sums(truth, logits), counts


def voxel_scores(
    true_positives: np.ndarray, predicted: np.ndarray, actual: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-class voxel precision, recall and F1 from counts (NaN where undefined)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "precision": true_positives / predicted,
            "recall": true_positives / actual,
            "f1": 2 * true_positives / (predicted + actual),
        }
