"""Training on several GPUs at once, with TensorFlow's ``MirroredStrategy``.

The one place of the training that speaks TensorFlow itself: on the other Keras backends, and
on one device, training runs on one device through Keras (:mod:`deepfinder.core.training_step`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .devices import import_keras
from .losses import loss_of_sums, loss_sums, validation_sums


def mirrored_strategy():
    """A ``tf.distribute.MirroredStrategy`` over the devices TensorFlow sees, when they are several;
    None on one device or on another Keras backend.

    Several GPUs (or, without a GPU, several logical CPUs, which only a test configures): each
    holds a copy of the model and computes a part of every batch.
    """
    if import_keras().backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    devices = tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("CPU")
    if len(devices) < 2:
        return None
    return tf.distribute.MirroredStrategy([device.name for device in devices])


def mirrored_steps(strategy, network, optimizer, loss: str, n_classes: int) -> tuple[Callable, Callable]:
    """The training and validation steps of ``network`` (the U-net's logits) spread over the devices
    of ``strategy``, as :func:`deepfinder.core.training_step.training_steps` gives them.

    Each step splits the batch between the devices, and the loss and its gradient are those of
    the whole batch (:func:`_whole_batch`), so the training is that of one device up to
    floating-point reduction order.
    """
    import tensorflow as tf

    def device_train_step(x, y):
        """One device's part of a training step: ``x``, ``y`` are its patches of the batch."""
        truth = tf.one_hot(tf.cast(y, tf.int32), n_classes)
        with tf.GradientTape() as tape:
            value = loss_of_sums(loss, _whole_batch(loss_sums(truth, network(x, training=True))))
        # The optimizer adds up the devices' gradients before its update.
        variables = network.trainable_variables
        optimizer.apply_gradients(zip(tape.gradient(value, variables), variables))
        return value

    def device_validation_sums(x, y):
        return validation_sums(tf.one_hot(tf.cast(y, tf.int32), n_classes), network(x, training=False))

    @tf.function
    def distributed_train_step(x, y):
        # Every device computes the same value, the loss of the whole batch.
        values = strategy.run(device_train_step, (x, y))
        return strategy.reduce(tf.distribute.ReduceOp.MEAN, values, axis=None)

    @tf.function
    def distributed_validation_step(x, y):
        sums, counts = tf.nest.map_structure(
            lambda value: strategy.reduce(tf.distribute.ReduceOp.SUM, value, axis=None),
            strategy.run(device_validation_sums, (x, y)),
        )
        return loss_of_sums(loss, sums), tf.stack(counts)

    def train_step(x: np.ndarray, y: np.ndarray) -> float:
        return float(distributed_train_step(_split_batch(strategy, x), _split_batch(strategy, y)))

    def validation_step(x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
        value, counts = distributed_validation_step(_split_batch(strategy, x), _split_batch(strategy, y))
        return float(value), counts.numpy()

    return train_step, validation_step


def _whole_batch(sums: dict) -> dict:
    """The :func:`~deepfinder.core.losses.loss_sums` of the whole batch, from those of one device's
    part (in a replica context).

    Their values are the sums over all devices; their gradient flows through this
    device's part only, so the devices' gradients add up to the gradient of the whole
    batch's loss.
    """
    import tensorflow as tf

    totals = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, sums)
    return {name: sums[name] + tf.stop_gradient(totals[name] - sums[name]) for name in sums}


def _split_batch(strategy, array: np.ndarray):
    """A batch as the parts the devices of ``strategy`` compute (consecutive patches, as even as
    possible)."""
    import tensorflow as tf

    devices, parts = strategy.extended.worker_devices, np.array_split(array, strategy.num_replicas_in_sync)

    def part_of(context):
        with tf.device(devices[context.replica_id_in_sync_group]):
            return tf.constant(parts[context.replica_id_in_sync_group])

    return strategy.experimental_distribute_values_from_function(part_of)
