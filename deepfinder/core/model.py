"""The DeepFinder 3D U-net (Moebel et al. 2021, Supp. Fig. 8) and its files on disk."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import h5py
import numpy as np

from .devices import bfloat16_hardware, import_keras
from .errors import InputError
from .io import atomic_output
from .settings import PRECISIONS, check_patch_size


def resolve_precision(precision: str = "auto") -> str:
    """The arithmetic the U-net runs in: ``"float32"`` or ``"bfloat16"``.

    ``"auto"`` picks bfloat16 (weights and softmax kept in float32, "mixed
    precision") where the hardware computes it natively (:func:`bfloat16_hardware`),
    which is faster (see benchmarks/RESULTS.md); float32 elsewhere.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"Unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bfloat16" if bfloat16_hardware() else "float32"
    return precision


def build_unet(n_classes: int, patch_size: int | None = None, precision: str = "float32"):
    """The paper's U-net: 902,928 + 33 * ``n_classes`` parameters.

    Parameters
    ----------
    n_classes : int
        Number of output classes, background included (>= 2).
    patch_size : int, optional
        Fixed input edge length in voxels (a multiple of 4); ``None`` accepts
        any size whose edges are multiples of 4 (fully convolutional inference).
    precision : {"float32", "bfloat16", "auto"}
        Arithmetic of the layers (see :func:`resolve_precision`). Weights are
        float32 either way, so a model trained in one runs in the other.

    Returns
    -------
    keras.Model
        Input (batch, z, y, x, 1) float32; output (batch, z, y, x, n_classes) softmax.
    """
    keras = import_keras()
    layers = keras.layers

    if n_classes < 2:
        raise ValueError(f"The network needs at least 2 classes (background + 1), got {n_classes}")
    if patch_size is not None:
        check_patch_size(patch_size)

    dtype = {"float32": "float32", "bfloat16": "mixed_bfloat16"}[resolve_precision(precision)]

    def conv(x, filters, size=3, activation="relu", dtype=dtype):
        # He initialisation suits ReLU: with Keras' default (Glorot, as upstream) the signal
        # shrinks ~10x on its way through the bottleneck of a new network, which then learns slowly.
        initializer = "he_normal" if activation == "relu" else "glorot_uniform"
        return layers.Conv3D(
            filters, size, padding="same", activation=activation, kernel_initializer=initializer, dtype=dtype
        )(x)

    def pool(x):
        return layers.MaxPooling3D(2, dtype=dtype)(x)

    def upsample(x):
        return layers.UpSampling3D(2, dtype=dtype)(x)

    def concatenate(x, skip):
        return layers.Concatenate(dtype=dtype)([x, skip])

    inputs = keras.Input(shape=(patch_size, patch_size, patch_size, 1))
    high = conv(conv(inputs, 32), 32)
    mid = conv(conv(pool(high), 48), 48)
    x = pool(mid)
    for _ in range(4):
        x = conv(x, 64)
    x = conv(upsample(x), 64, size=2)
    x = conv(conv(concatenate(x, mid), 48), 48)
    x = conv(upsample(x), 48, size=2)
    x = conv(conv(concatenate(x, high), 32), 32)
    # Logits and softmax in float32, as a layer of their own: training reads the logits
    # (see logits_model) so that its loss keeps a gradient however confident the softmax.
    logits = conv(x, n_classes, size=1, activation=None, dtype="float32")
    outputs = layers.Activation("softmax", dtype="float32", name="softmax")(logits)
    return keras.Model(inputs, outputs, name="deepfinder_unet")


def logits_model(model):
    """The same network (shared weights) stopped before its softmax: per-voxel class logits."""
    keras = import_keras()
    return keras.Model(model.input, model.get_layer("softmax").input, name="deepfinder_unet_logits")


def expected_parameter_count(n_classes: int) -> int:
    return 902_928 + 33 * n_classes


# --------------------------------------------------------------------------- files


def metadata_path(weights_path: str | os.PathLike) -> Path:
    """The JSON file that describes a weights file: ``x.weights.h5`` -> ``x.json``."""
    weights_path = Path(weights_path)
    name = weights_path.name
    for suffix in (".weights.h5", ".h5"):
        if name.endswith(suffix):
            return weights_path.with_name(name[: -len(suffix)] + ".json")
    return weights_path.with_suffix(".json")


def save_model(model, weights_path: str | os.PathLike, metadata: dict) -> Path:
    """Write the weights (``*.weights.h5``) and, beside them, ``metadata`` as JSON.

    ``metadata`` should hold at least ``n_classes``; training adds ``patch_size``,
    ``class_names``, ``voxel_size`` and what else describes the model.
    """
    weights_path = Path(weights_path)
    if not weights_path.name.endswith(".weights.h5"):
        raise ValueError(f"Weights file name must end with .weights.h5: {weights_path}")
    metadata = {**metadata, "n_classes": int(model.output_shape[-1])}
    # HDF5 writes to memory, the bytes go to disk with plain writes: HDF5 failing on a full
    # disk leaves its file half-open, with errors when it is freed and a crash at exit.
    weights = _WeightsInMemory()
    model.save_weights(weights)
    with (
        atomic_output(metadata_path(weights_path)) as metadata_temporary,
        atomic_output(weights_path) as weights_temporary,
    ):
        weights_temporary.write_bytes(weights.getvalue())
        metadata_temporary.write_text(json.dumps(metadata, indent=2))
    return weights_path


class _WeightsInMemory(io.BytesIO):
    """A memory buffer Keras accepts as a weights file: it checks the name's extension."""

    def __str__(self) -> str:
        return "in memory.weights.h5"


def read_metadata(weights_path: str | os.PathLike) -> dict:
    """The description of a model (class count, names, voxel size...) from the JSON beside its
    weights; empty without one, :class:`InputError` when it is not JSON."""
    meta_file = metadata_path(weights_path)
    if not meta_file.exists():
        return {}
    try:
        return json.loads(meta_file.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"{meta_file} is not a readable model description (JSON): {error}") from error


def check_weights_file(weights_path: str | os.PathLike) -> None:
    """Refuse a weights file that is not HDF5, cannot be read whole (e.g. a truncated copy) or
    holds NaN or infinite weights (a training that diverged).

    Reads the file with h5py, so that a bad file is refused before TensorFlow loads and
    before any output is written. The file must exist.

    Raises
    ------
    InputError
        Naming the file and what is wrong with it.
    """
    try:
        with h5py.File(weights_path, "r") as weights:
            names: list[str] = []
            weights.visit(names.append)
            arrays = [weights[name] for name in names if isinstance(weights[name], h5py.Dataset)]
            # Every array is read: a truncated copy often keeps a whole index of its arrays.
            broken = [
                array.name
                for array in arrays
                if np.issubdtype(array.dtype, np.floating) and not np.all(np.isfinite(array[()]))
            ]
    except OSError as error:
        raise InputError(f"{weights_path} is not a readable model file (HDF5 weights): {error}") from error
    if broken:
        raise InputError(
            f"{weights_path} holds NaN or infinite weights ({', '.join(broken[:3])}): "
            "give the model of a training that converged"
        )


def load_model(weights_path: str | os.PathLike, n_classes: int | None = None, precision: str = "float32"):
    """Build the U-net (in ``precision``, see :func:`build_unet`), load weights; return ``(model, metadata)``.

    The class count comes from the JSON beside the weights, or from ``n_classes``
    for a bare weights file (e.g. one written by the upstream DeepFinder).
    """
    weights_path = Path(weights_path)
    if not weights_path.exists():
        raise FileNotFoundError(f"Model weights not found: {weights_path}")
    meta_file = metadata_path(weights_path)
    metadata = read_metadata(weights_path)
    check_weights_file(weights_path)
    if n_classes is None:
        n_classes = metadata.get("n_classes")
    if n_classes is None:
        raise InputError(
            f"{weights_path} has no {meta_file.name} beside it: give the number of "
            "classes (background included)"
        )
    if metadata.get("n_classes", n_classes) != n_classes:
        raise InputError(f"{weights_path} was trained for {metadata['n_classes']} classes, not {n_classes}")
    model = build_unet(n_classes, precision=precision)
    try:
        model.load_weights(weights_path)
    except ValueError as error:
        raise InputError(
            f"{weights_path} does not hold weights of the DeepFinder U-net with {n_classes} classes: {error}"
        ) from error
    return model, {**metadata, "n_classes": n_classes}


def output_classes(model) -> int:
    return int(model.output_shape[-1])


def count_parameters(model) -> int:
    return int(sum(np.prod(w.shape) for w in model.weights))
