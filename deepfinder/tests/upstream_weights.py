"""Weights files as the upstream DeepFinder writes them, for compatibility tests.

The upstream core (Keras 2, TF <= 2.6) saves ``model.save_weights("x.h5")``: an
HDF5 file listing every layer by its Keras 2 default name, with the kernels and
biases of the weighted ones. This writes that layout with h5py, from the
upstream layer order, so no Keras 2 is needed.
"""

from __future__ import annotations

import h5py
import numpy as np

# Upstream layer order (conv sizes in the paper's Supp. Fig. 8): name, kernel edge, filters.
_UPSTREAM_LAYERS = (
    [
        ("input_1", None, None),
        ("conv3d", 3, 32),
        ("conv3d_1", 3, 32),
        ("max_pooling3d", None, None),
        ("conv3d_2", 3, 48),
        ("conv3d_3", 3, 48),
        ("max_pooling3d_1", None, None),
    ]
    + [(f"conv3d_{i}", 3, 64) for i in range(4, 8)]
    + [
        ("up_sampling3d", None, None),
        ("conv3d_8", 2, 64),
        ("concatenate", None, None),
        ("conv3d_9", 3, 48),
        ("conv3d_10", 3, 48),
        ("up_sampling3d_1", None, None),
        ("conv3d_11", 2, 48),
        ("concatenate_1", None, None),
        ("conv3d_12", 3, 32),
        ("conv3d_13", 3, 32),
        ("conv3d_14", 1, "n_classes"),
    ]
)
_INPUT_CHANNELS = {"conv3d": 1, "conv3d_9": 64 + 48, "conv3d_12": 48 + 32}


def write_upstream_weights(path, n_classes: int, seed: int = 0) -> list[np.ndarray]:
    """Write random U-net weights in the upstream Keras 2 .h5 layout; return them in layer order."""
    rng = np.random.default_rng(seed)
    weights, channels = [], 1
    with h5py.File(path, "w") as handle:
        handle.attrs["layer_names"] = [name.encode() for name, _, _ in _UPSTREAM_LAYERS]
        handle.attrs["backend"] = b"tensorflow"
        handle.attrs["keras_version"] = b"2.6.0"
        for name, edge, filters in _UPSTREAM_LAYERS:
            group = handle.create_group(name)
            if edge is None:
                group.attrs["weight_names"] = []
                continue
            filters = n_classes if filters == "n_classes" else filters
            channels = _INPUT_CHANNELS.get(name, channels)
            kernel = rng.normal(
                0, np.sqrt(2 / (edge**3 * channels)), (edge, edge, edge, channels, filters)
            ).astype(np.float32)
            bias = rng.normal(0, 0.01, filters).astype(np.float32)
            group.attrs["weight_names"] = [f"{name}/kernel:0".encode(), f"{name}/bias:0".encode()]
            group.create_dataset(f"{name}/kernel:0", data=kernel)
            group.create_dataset(f"{name}/bias:0", data=bias)
            weights += [kernel, bias]
            channels = filters
    return weights
