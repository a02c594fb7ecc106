"""The engine on Keras' JAX backend: train, segment and cluster with ``KERAS_BACKEND=jax``.

The backend is chosen once per process, when Keras is imported, so the chain runs as
``deepfinder`` command lines in an interpreter of its own; this suite's own process stays on
TensorFlow, the default, and segments the same tomogram with the weights JAX trained.

The two backends train differently (their random weight initialisation and kernels differ),
so their label maps are compared on the same saved weights: the same network in float32 on
both, whose scores differ by float32 round-off only (other convolution algorithms, other
summation orders). A voxel's label can then differ only where two classes score within
that round-off of each other, on the edges of the blobs: at most 1% of the voxels
(:data:`SAME_LABEL_FRACTION`).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepfinder.core.io import read_volume
from deepfinder.core.model import metadata_path, read_metadata
from deepfinder.core.segment import segment_tomogram
from deepfinder.core.settings import SegmentationSettings
from deepfinder.core.tables import csv as particle_csv
from deepfinder.tests.test_core_train import blob_tomogram

pytest.importorskip("jax", reason="the JAX backend comes with the test extra: pip install -e '.[test]'")

#: Fraction of voxels that must get the same label from both backends on the same weights.
SAME_LABEL_FRACTION = 0.99

#: Runs the command lines of the JSON list argv[1] in turn, then names the backend they ran on.
CHAIN = """
import json, sys
import keras
from deepfinder.core.cli import main
for command in json.loads(sys.argv[1]):
    main(command)
print("Keras backend:", keras.backend.backend())
"""

# float32 on both backends, so that their scores differ by round-off only; a step size the
# blobs are learnt with in a few epochs.
TRAINING = [
    "--patch-size", "16", "--batch-size", "4", "--steps-per-epoch", "8", "--val-steps", "1",
    "--epochs", "2", "--shift", "4", "--loss", "dice_cross_entropy", "--learning-rate", "1e-3",
    "--val-fraction", "0.3", "--precision", "float32", "--quiet",
]  # fmt: skip


@pytest.fixture(scope="module")
def jax_chain(tmp_path_factory):
    """Train, segment and cluster on the JAX backend; the folder of its outputs, and the data."""
    folder = tmp_path_factory.mktemp("jax")
    tomogram, label_map, table = blob_tomogram(folder, "train", 1)
    particles = particle_csv.write(folder / "particles.csv", table)
    model = folder / "model"
    commands = [
        ["train", "--tomograms", str(tomogram), "--labels", str(label_map), "--particles", str(particles),
         "--classes", "2", "--out", str(model), *TRAINING],
        ["segment", "--tomogram", str(tomogram), "--model", str(model / "best.weights.h5"),
         "--labels", str(folder / "labels.mrc"), "--precision", "float32", "--quiet"],
        ["cluster", "--labels", str(folder / "labels.mrc"), "--radius", "4",
         "--output", str(folder / "picked.csv"), "--quiet"],
    ]  # fmt: skip
    return folder, tomogram, table, run_on_jax(commands)


def run_on_jax(commands: list[list[str]]) -> str:
    """Run ``deepfinder`` command lines in one process on the JAX backend; its standard output."""
    result = subprocess.run(
        [sys.executable, "-c", CHAIN, json.dumps(commands)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


def test_jax_backend_trains_segments_and_clusters(jax_chain):
    folder, _, table, output = jax_chain
    assert "Keras backend: jax" in output
    history = json.loads((folder / "model" / "history.json").read_text())
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    picked = particle_csv.read(folder / "picked.csv").particles
    # Most blobs found, each pick on a blob.
    distances = np.linalg.norm(picked.xyz[:, None, :] - table.xyz[None, :, :], axis=-1)
    assert len(picked) >= len(table) // 2
    assert np.all(distances.min(axis=1) <= 3.0)


def test_tensorflow_labels_what_jax_labelled_with_the_same_weights(jax_chain, tmp_path):
    folder, tomogram, _, _ = jax_chain
    segment_tomogram(
        tomogram,
        folder / "model" / "best.weights.h5",
        tmp_path / "labels.mrc",
        settings=SegmentationSettings(precision="float32"),
    )
    jax_labels, tf_labels = read_volume(folder / "labels.mrc"), read_volume(tmp_path / "labels.mrc")
    assert np.count_nonzero(jax_labels) > 0.01 * jax_labels.size  # the blobs were found
    assert np.mean(jax_labels == tf_labels) >= SAME_LABEL_FRACTION


def test_a_coarse_model_labels_alike_on_both_backends(jax_chain, tmp_path):
    folder, tomogram, _, _ = jax_chain
    weights = folder / "model" / "best.weights.h5"
    # The trained model, said trained at twice the voxel size, serves as the coarse one.
    coarse = Path(shutil.copy(weights, tmp_path / "coarse.weights.h5"))
    metadata = read_metadata(weights)
    metadata_path(coarse).write_text(json.dumps({**metadata, "voxel_size": 2 * metadata["voxel_size"]}))
    jax_labels = tmp_path / "jax_labels.mrc"
    run_on_jax(
        [
            ["segment", "--tomogram", str(tomogram), "--model", str(weights), "--coarse-model", str(coarse),
             "--labels", str(jax_labels), "--precision", "float32", "--quiet"],
        ]
    )  # fmt: skip
    tf = segment_tomogram(
        tomogram,
        weights,
        tmp_path / "tf_labels.mrc",
        settings=SegmentationSettings(precision="float32"),
        coarse_weights_path=coarse,
    )
    plain = read_volume(folder / "labels.mrc")
    labels = read_volume(jax_labels)
    assert np.mean(labels != plain) > 0.001  # the coarse model took part
    assert np.mean(labels == read_volume(tf["labels"])) >= SAME_LABEL_FRACTION
