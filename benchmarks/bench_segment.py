"""Segmentation throughput and memory of deepfinder.core.segment, untrained weights.

Throughput (default): in one run, on this machine,

- plain forward speed of the U-net on one large patch (the default tile edge),
- ``segment_tomogram`` with default settings on a noise tomogram written to a
  temporary MRC file (label map + all score maps written),
- the upstream scheme: one 160^3 patch at a time (batch 1) of which the centre
  110^3 is kept (25-voxel crop); its throughput is counted generously as
  110^3 voxels per forward pass, ignoring its border and overlap losses. It is
  measured in the precision this engine uses (the tiling gain alone) and in
  float32 (what the upstream code runs in).

Memory (``--memory-only``): ``segment_tomogram`` alone on a tomogram of
``--shape``, reporting the peak resident memory of the process.

Usage:
    python benchmarks/bench_segment.py [--shape Z Y X] [--crop C] [--precision auto]
    python benchmarks/bench_segment.py --memory-only --shape 464 928 928
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

from deepfinder.core.io import create_volume
from deepfinder.core.logs import engine_log
from deepfinder.core.model import build_unet, resolve_precision, save_model
from deepfinder.core.segment import plan_axis, segment_tomogram
from deepfinder.core.settings import AUTOMATIC_TILE_SIZE, PRECISIONS, SegmentationSettings, default_of

N_CLASSES = 4
UPSTREAM_PATCH, UPSTREAM_CROP = 160, 25


def noise_tomogram(path: Path, shape, seed=0) -> Path:
    """Gaussian-noise float32 MRC written slab by slab (never whole in memory)."""
    rng = np.random.default_rng(seed)
    mrc = create_volume(path, shape, np.float32, voxel_size=10.0)
    for z in range(0, shape[0], 16):
        mrc.data[z : z + 16] = rng.normal(size=(min(16, shape[0] - z),) + tuple(shape[1:]))
        mrc.flush()
    mrc.close()
    return path


def forward_speed(model, shape, repeats=2) -> float:
    """Voxels per second of plain forward passes on one patch of ``shape`` (after a warm-up)."""
    patch = np.random.default_rng(1).normal(size=(1, *shape, 1)).astype(np.float32)
    np.asarray(model.predict_on_batch(patch))
    started = time.perf_counter()
    for _ in range(repeats):
        np.asarray(model.predict_on_batch(patch))
    return repeats * np.prod(shape) / (time.perf_counter() - started)


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(232, 464, 464), metavar=("Z", "Y", "X"))
    parser.add_argument("--patch-size", type=int, default=AUTOMATIC_TILE_SIZE)
    parser.add_argument("--crop", type=int, default=default_of(SegmentationSettings, "crop_voxels"))
    parser.add_argument("--batch-size", type=int, default=default_of(SegmentationSettings, "batch_size"))
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    parser.add_argument("--memory-only", action="store_true")
    args = parser.parse_args(argv)
    precision = resolve_precision(args.precision)

    import keras

    keras.utils.set_random_seed(0)
    with tempfile.TemporaryDirectory(prefix="bench_segment_") as folder:
        folder = Path(folder)
        model = build_unet(N_CLASSES, precision=precision)
        weights = save_model(model, folder / "unet.weights.h5", {})
        tomogram = noise_tomogram(folder / "tomo.mrc", tuple(args.shape))
        plans = [plan_axis(size, args.patch_size, args.crop) for size in args.shape]
        computed = np.prod([len(p.starts) * p.length for p in plans])
        print(
            f"tomogram {tuple(args.shape)} (z, y, x) = {np.prod(args.shape) / 1e6:.1f} Mvoxel; "
            f"tiles {tuple(p.length for p in plans)} x {np.prod([len(p.starts) for p in plans])}, "
            f"crop {args.crop}, batch {args.batch_size}, {precision}: computed/useful voxels "
            f"{computed / np.prod(args.shape):.3f}"
        )
        settings = SegmentationSettings(
            patch_size=args.patch_size, crop_voxels=args.crop, batch_size=args.batch_size, precision=precision
        )
        if args.memory_only:
            del model
            rss_before = peak_rss_gb()
            with engine_log():
                result = segment_tomogram(
                    tomogram, weights, folder / "labels.mrc", folder / "scores.mrc", settings
                )
            print(
                f"segment_tomogram: {result['seconds']:.0f} s, "
                f"{result['voxels_per_second'] / 1e6:.3f} Mvoxel/s; peak RSS {peak_rss_gb():.2f} GB "
                f"(before segmenting {rss_before:.2f} GB; input file "
                f"{tomogram.stat().st_size / 1024**3:.2f} GB)"
            )
            return

        # The machine is shared: plain speed is taken before and after segmenting and averaged.
        plain_before = forward_speed(model, (args.patch_size,) * 3)
        result = segment_tomogram(tomogram, weights, folder / "labels.mrc", folder / "scores.mrc", settings)
        plain_after = forward_speed(model, (args.patch_size,) * 3)
        plain = (plain_before + plain_after) / 2
        print(
            f"plain forward, one {args.patch_size}^3 patch: {plain / 1e6:.3f} Mvoxel/s "
            f"(before {plain_before / 1e6:.3f}, after {plain_after / 1e6:.3f})"
        )
        ours = result["voxels_per_second"]
        print(
            f"segment_tomogram (labels + {N_CLASSES - 1} score maps written): "
            f"{result['seconds']:.1f} s, {ours / 1e6:.3f} Mvoxel/s = {ours / plain:.0%} of plain forward"
        )
        kept = (UPSTREAM_PATCH - 2 * UPSTREAM_CROP) ** 3 / UPSTREAM_PATCH**3
        float32_model = build_unet(N_CLASSES)
        float32_model.set_weights(model.get_weights())
        for label, network in ((precision, model), ("float32, as upstream runs", float32_model)):
            upstream = forward_speed(network, (UPSTREAM_PATCH,) * 3) * kept
            print(
                f"upstream scheme (patch {UPSTREAM_PATCH}, crop {UPSTREAM_CROP}, batch 1, {label}): "
                f"{upstream / 1e6:.3f} Mvoxel/s at best ({kept:.3f} of each forward kept); "
                f"this engine {ours / upstream:.2f}x faster"
            )
        print(f"peak RSS of this run {peak_rss_gb():.2f} GB")


if __name__ == "__main__":
    main()
