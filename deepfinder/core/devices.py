"""What the devices that compute can do, asked of whichever Keras backend runs.

The only place, with :mod:`deepfinder.core.multi_device`, that imports a backend (TensorFlow,
JAX or PyTorch) itself: everything else computes through ``keras`` and ``keras.ops``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# TensorFlow's C++ information lines are noise to a user: warnings and errors only.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

#: The first NVIDIA GPUs with bfloat16 tensor cores (Ampere).
BFLOAT16_COMPUTE_CAPABILITY = (8, 0)


def import_keras():
    """Import Keras (and with it its backend, TensorFlow by default) and return it.

    With ``TF_CPP_MIN_LOG_LEVEL=3`` (set by the command line), TensorFlow's native start-up lines
    (oneDNN, CUDA drivers), printed before its log level applies, are kept off stderr. A failed
    import still raises, with its message.
    """
    if "keras" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        import keras

        return keras
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return keras


def cpu_bfloat16_instructions() -> list[str]:
    """The bfloat16 instruction sets the CPU announces (``amx_bf16``, ``avx512_bf16``); empty
    where it has none or ``/proc/cpuinfo`` cannot be read."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    return [flag for flag in ("amx_bf16", "avx512_bf16") if flag in flags]


def gpu_compute_capabilities() -> list[tuple[int, int]]:
    """The CUDA compute capability (major, minor) of each GPU the Keras backend computes on; empty
    without one. A GPU that reports none (not NVIDIA's) counts as (0, 0)."""
    keras = import_keras()
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return [
            tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
            for gpu in tf.config.list_physical_devices("GPU")
        ]
    if backend == "jax":
        import jax

        return [
            tuple(int(part) for part in getattr(device, "compute_capability", "0.0").split(".")[:2])
            for device in jax.devices()
            if device.platform == "gpu"
        ]
    if backend == "torch":
        import torch

        return [torch.cuda.get_device_capability(index) for index in range(torch.cuda.device_count())]
    return []


def bfloat16_hardware() -> bool:
    """True where the devices that compute compute bfloat16 natively: every visible GPU of compute
    capability 8.0 (Ampere) or later, or, without a GPU, a CPU with AVX512-BF16 or AMX."""
    gpus = gpu_compute_capabilities()
    if gpus:
        return all(capability >= BFLOAT16_COMPUTE_CAPABILITY for capability in gpus)
    return bool(cpu_bfloat16_instructions())
