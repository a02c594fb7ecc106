"""One training step and one validation step of the U-net, on whichever Keras backend runs.

On one device both go through Keras' own compiled steps (``train_on_batch``,
``predict_on_batch``), which each backend implements: TensorFlow's ``tf.function``, JAX's
``jit``, PyTorch. Several GPUs are TensorFlow's (:mod:`deepfinder.core.multi_device`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .devices import import_keras
from .losses import loss_of_sums, loss_sums, validation_sums
from .model import logits_model


def training_steps(model, optimizer, loss: str, n_classes: int, strategy=None) -> tuple[Callable, Callable]:
    """The steps that train ``model`` with ``optimizer`` (built for its weights) and validate it.

    Parameters
    ----------
    model : keras.Model
        The U-net (:func:`deepfinder.core.model.build_unet`); trained through its logits.
    optimizer : keras.optimizers.Optimizer
        Built for ``model.trainable_variables``.
    loss : str
        A name of :data:`~deepfinder.core.settings.LOSSES` (see :mod:`deepfinder.core.losses`).
    n_classes : int
        Classes, background included.
    strategy : tf.distribute.MirroredStrategy, optional
        Several devices to spread each batch over (:func:`~deepfinder.core.multi_device.mirrored_strategy`),
        under whose scope ``model`` and ``optimizer`` were made.

    Returns
    -------
    train_step : callable(x, y) -> float
        One update on a batch of patches ``x`` (batch, z, y, x, 1) float32 with label maps
        ``y`` (batch, z, y, x) of class ids; returns the batch's loss before the update.
    validation_step : callable(x, y) -> (float, ndarray)
        The loss of a batch and its per-class voxel counts (3, n_classes): true positives,
        predicted, actual (:func:`~deepfinder.core.losses.voxel_scores`).
    """
    network = logits_model(model)
    if strategy is not None:
        from .multi_device import mirrored_steps

        return mirrored_steps(strategy, network, optimizer, loss, n_classes)
    keras = import_keras()
    ops = keras.ops

    class BatchLoss(keras.losses.Loss):
        """The loss of the whole batch: not a mean of per-patch losses, since Dice's is not."""

        def call(self, labels, logits):
            return loss_of_sums(loss, loss_sums(ops.one_hot(ops.cast(labels, "int32"), n_classes), logits))

    network.compile(optimizer=optimizer, loss=BatchLoss(name=loss))

    def train_step(x: np.ndarray, y: np.ndarray) -> float:
        return float(network.train_on_batch(x, y))

    def validation_step(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        logits = network.predict_on_batch(x)
        sums, counts = validation_sums(ops.one_hot(ops.cast(y, "int32"), n_classes), logits)
        return float(loss_of_sums(loss, sums)), ops.convert_to_numpy(ops.stack(counts))

    return train_step, validation_step
