"""Host side of segmentation alone: ``segment_tomogram`` with a stand-in network of (nearly) zero cost.

The stand-in takes the place of the model loaded from the weights file: a 1x1x1 convolution
giving ``--classes`` scores per voxel, so the tiling, the outputs' shapes and everything the
host does (reading and normalising tiles, placing the outputs, labels, writing the maps) are
those of a real run, while the network costs next to nothing. On a GPU that host work is what
bounds a segmentation once the network is fast.

Reported: wall time and Mvoxel/s of the whole run, and the run's own timing breakdown, of which
reading, accumulation, labels and writing are host work ("network" is the stand-in plus the
argmax head, the device's work). Pin it to one core to measure one core:

    taskset -c 0 python benchmarks/bench_segment_host.py [--shape 464 928 928] [--classes 13] [--scores]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_segment import noise_tomogram

from deepfinder.core import segment
from deepfinder.core.logs import engine_log
from deepfinder.core.settings import SegmentationSettings


def stand_in_model(n_classes: int):
    """Keras model (batch, z, y, x, 1) -> (batch, z, y, x, n_classes): each class score a fixed
    multiple of the voxel's value, so every class wins somewhere."""
    import keras

    inputs = keras.Input(shape=(None, None, None, 1))
    scale = keras.layers.Conv3D(n_classes, 1, use_bias=False, name="scale")
    outputs = scale(inputs)
    scale.set_weights([np.linspace(-1, 1, n_classes, dtype=np.float32).reshape(1, 1, 1, 1, n_classes)])
    return keras.Model(inputs, outputs, name="stand_in")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(464, 928, 928), metavar=("Z", "Y", "X"))
    parser.add_argument("--classes", type=int, default=13, help="classes, background included")
    parser.add_argument("--scores", action="store_true", help="also write the score maps")
    args = parser.parse_args(argv)

    model = stand_in_model(args.classes)
    # segment_tomogram loads its model from a file: the stand-in takes that model's place.
    segment.load_model = lambda *_, **__: (model, {"n_classes": args.classes})
    with tempfile.TemporaryDirectory(prefix="bench_segment_host_") as folder:
        folder = Path(folder)
        tomogram = noise_tomogram(folder / "tomo.mrc", tuple(args.shape))
        weights = folder / "stand_in.weights.h5"
        weights.touch()
        scores = folder / "scores.mrc" if args.scores else None
        started = time.perf_counter()
        with engine_log(logging.INFO):
            result = segment.segment_tomogram(
                tomogram, weights, folder / "labels.mrc", scores, SegmentationSettings(precision="float32")
            )
        seconds = time.perf_counter() - started
    voxels = np.prod(args.shape)
    print(
        f"tomogram {tuple(args.shape)} = {voxels / 1e6:.0f} Mvoxel, {args.classes} classes, "
        f"{'labels + score maps' if args.scores else 'labels only'}, tiles {result['tile_shape']} x "
        f"{result['n_tiles']}: {seconds:.1f} s, {voxels / seconds / 1e6:.1f} Mvoxel/s"
    )
    # Engines older than the per-stage timing report none; the script measures them too (before/after).
    if "stage_seconds" in result:
        timings = result["stage_seconds"]
        host = sum(timings[stage] for stage in ("reading", "accumulation", "labels", "writing"))
        print(
            f"host work (reading + accumulation + labels + writing): {host:.1f} s, "
            f"{voxels / host / 1e6:.1f} Mvoxel/s; network (stand-in + head): {timings['network']:.1f} s"
        )


if __name__ == "__main__":
    main()
