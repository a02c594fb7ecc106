"""Training on several devices, with two logical CPUs standing in for two GPUs.

Each training is a ``deepfinder train`` command line in its own interpreter, whose CPU is
split into logical devices before TensorFlow initialises them (which happens once per
process). With two devices, training spreads over both (``tf.distribute.MirroredStrategy``),
as it does over two GPUs.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deepfinder.core.tables import csv as particle_csv
from deepfinder.tests.test_core_train import blob_tomogram

pytestmark = pytest.mark.slow

#: Split the CPU into argv[1] logical devices, then run the command line argv[2:].
ON_DEVICES = """
import sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * int(sys.argv[1]))
from deepfinder.core.cli import main
main(sys.argv[2:])
"""

# Three patches per batch, so that two devices compute unequal parts (2 + 1); float32 (the
# default picks bfloat16 on CPUs that have it) so that round-off is small.
SETTINGS = [
    "--patch-size", "16", "--batch-size", "3", "--steps-per-epoch", "3", "--val-steps", "2",
    "--shift", "4", "--loss", "dice_cross_entropy", "--learning-rate", "1e-3",
    "--precision", "float32", "--val-fraction", "0.3",
]  # fmt: skip

#: Relative tolerance on the losses of the history, and on Adam's moments (relative norm of the
#: difference), between a training on one device and the same on two (see test_two_devices_train_as_one).
LOSS_TOLERANCE = 2e-3
MOMENTS_TOLERANCE = 1e-2


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    tomogram, label_map, table = blob_tomogram(folder, "train", 1, radii=(4.0, 3.0))
    particle_csv.write(folder / "particles.csv", table)
    return ["--tomograms", tomogram, "--labels", label_map, "--particles", folder / "particles.csv"]


def train_on(n_devices: int, data: list, out, epochs: int, *extra: str) -> subprocess.CompletedProcess:
    """Run ``deepfinder train`` on ``n_devices`` logical CPUs (no GPU)."""
    command = ["train", *map(str, data), "--classes", "3", "--out", str(out), "--epochs", str(epochs)]
    return subprocess.run(
        [sys.executable, "-c", ON_DEVICES, str(n_devices), *command, *SETTINGS, *extra],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"},
    )


def trained(result: subprocess.CompletedProcess) -> str:
    """The output of a training that succeeded."""
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def one_device(data, tmp_path_factory):
    """Two epochs on one device: the reference."""
    out = tmp_path_factory.mktemp("one_device")
    log = trained(train_on(1, data, out, 2))
    assert "training on" not in log
    return out


def losses(out) -> np.ndarray:
    history = json.loads((out / "history.json").read_text())
    return np.array([[row["train_loss"], row["val_loss"]] for row in history])


def adam_moments(out) -> np.ndarray:
    """Adam's state in the last checkpoint (step count, step size, moments), as one vector."""
    with np.load(next(out.glob("checkpoint-*.optimizer.npz"))) as saved:
        return np.concatenate([saved[name].ravel().astype(float) for name in saved.files])


def assert_trained_alike(run, reference):
    np.testing.assert_allclose(losses(run), losses(reference), rtol=LOSS_TOLERANCE)
    moments, reference_moments = adam_moments(run), adam_moments(reference)
    difference = np.linalg.norm(moments - reference_moments) / np.linalg.norm(reference_moments)
    assert difference < MOMENTS_TOLERANCE


def test_two_devices_train_as_one(data, one_device, tmp_path):
    """Two devices, each computing part of every batch, train as one device does.

    Same seed, so same initial weights and same batches; the loss is the whole batch's and the
    optimizer adds up the devices' gradients. What differs is the order of floating-point sums
    (each device sums its part, then the parts are added): the losses of the first epoch differ
    by about 1e-6 (relative), and Adam, whose first updates are about the step size times the
    gradient's sign for every weight, spreads this to 1.4e-4 in the validation loss and 7e-4
    in its moments (relative norm) after 6 steps (measured). The tolerances, 2e-3 and 1e-2, are
    about ten times these and ten times below what a wrong split gives: a loss averaging each
    device's own Dice and cross-entropy instead of the whole batch's differs by 1% after 3 steps
    and 2.5% after 6, and its summed gradients (Adam's moments) by 100%. The moments also differ
    if the devices draw other or more patches, which Adam's scale-free updates could hide in the
    losses.
    """
    log = trained(train_on(2, data, tmp_path, 2))
    assert "training on 2 devices (CPU:0, CPU:1): each batch of 3 patches split 2 + 1" in log
    assert_trained_alike(tmp_path, one_device)


@pytest.mark.parametrize("first, then", [(2, 1), (1, 2)])
def test_a_checkpoint_continues_on_another_number_of_devices(data, one_device, tmp_path, first, then):
    """Stopped after epoch 1 on ``first`` devices, continued on ``then``: the training of one
    device (tolerances of test_two_devices_train_as_one)."""
    trained(train_on(first, data, tmp_path, 1))
    log = trained(train_on(then, data, tmp_path, 2))
    assert "epoch 1/2 step" not in log and "epoch 2/2 step 3/3" in log
    assert_trained_alike(tmp_path, one_device)


def test_a_batch_smaller_than_the_devices_is_refused(data, tmp_path):
    result = train_on(2, data, tmp_path, 1, "--batch-size", "1")
    assert result.returncode == 2
    assert "--batch-size: 1 patches cannot be split between the 2 devices" in result.stderr
    assert not (tmp_path / "history.json").exists()
