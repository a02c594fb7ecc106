"""Segmentation time with and without a region-of-interest mask, untrained weights.

On one noise tomogram, ``segment_tomogram`` runs without a mask and with masks covering about
half of the volume: the half x < X/2 (a box, as a carbon edge excluded) and a tilted slab of
half the depth (a lamella). Runs alternate (none, box, slab, none, box, slab...) so that the
load of a shared machine weighs on each alike; the best time of each is reported.

Usage:
    python benchmarks/bench_roi.py [--shape Z Y X] [--repeats N] [--patch-size N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from bench_segment import N_CLASSES, noise_tomogram

from deepfinder.core.model import build_unet, save_model
from deepfinder.core.segment import segment_tomogram
from deepfinder.core.settings import SegmentationSettings
from deepfinder.core.simulate import SpecimenParameters


def masks(shape) -> dict[str, np.ndarray | None]:
    """No mask, the half x < X/2, and a slab of half the depth tilted by 12 degrees."""
    box = np.zeros(shape, dtype=bool)
    box[..., : shape[2] // 2] = True
    slab = SpecimenParameters(
        shape, 10.0, slab_thickness_voxels=shape[0] // 2, slab_tilt_deg=12.0
    ).slab_mask()
    return {"none": None, "half box (x < X/2)": box, "tilted slab, half the depth": slab}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 256, 256), metavar=("Z", "Y", "X"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--patch-size", type=int, default=0, help="tile edge (default: automatic)")
    args = parser.parse_args(argv)
    import keras

    keras.utils.set_random_seed(0)
    shape = tuple(args.shape)
    settings = SegmentationSettings(patch_size=args.patch_size)
    regions = masks(shape)
    best: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        tomogram = noise_tomogram(folder / "tomo.mrc", shape)
        weights = save_model(build_unet(N_CLASSES), folder / "unet.weights.h5", {})
        for _ in range(args.repeats):
            for name, mask in regions.items():
                result = segment_tomogram(
                    tomogram, weights, folder / "labels.mrc", folder / "s.mrc", settings, mask=mask
                )
                print(f"{name}: {result['seconds']:.1f} s, {result['n_tiles']} tiles predicted", flush=True)
                if name not in best or result["seconds"] < best[name]["seconds"]:
                    best[name] = result
    none = best["none"]["seconds"]
    tiles = "x".join(str(n) for n in best["none"]["tile_shape"])
    print(
        f"\n| Mask ({shape[2]} x {shape[1]} x {shape[0]}, tiles {tiles}) "
        "| Volume | Tiles | Best time | vs none |"
    )
    print("|---|---|---|---|---|")
    for name, result in best.items():
        fraction = 1.0 if regions[name] is None else regions[name].mean()
        n_all = result["n_tiles"] + result["n_tiles_skipped"]
        print(
            f"| {name} | {fraction:.0%} | {result['n_tiles']} of {n_all} | {result['seconds']:.1f} s "
            f"| {result['seconds'] / none:.2f}x |"
        )


if __name__ == "__main__":
    main()
