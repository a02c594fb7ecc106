"""Simulator speed: one 256 x 256 x 128 tomogram with about 300 particles.

Usage: python benchmarks/bench_simulate.py [--shrec] [--shrec-dir DIR]
Prints the time of each stage and the peak memory. With --shrec, also times
one SHREC'19-like tomogram of the bench preset (512 x 512 x 200, ~2500
particles) when the SHREC'19 data is found (benchmarks/shrec_data.py), and
skips it cleanly otherwise.
"""

import argparse
import resource
import tempfile
import time

import numpy as np
from shrec_data import add_shrec_dir_option, find_shrec_dir

from deepfinder.core.shapes import procedural_shape
from deepfinder.core.simulate import (
    SpecimenParameters,
    TiltSeriesParameters,
    build_specimen,
    reconstruct_tilt_series,
    simulate_dataset,
)


def peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shrec", action="store_true", help="also time one bench-preset tomogram")
    add_shrec_dir_option(parser)
    args = parser.parse_args()

    voxel_size = 12.0
    shapes = [procedural_shape(name, voxel_size) for name in ("ribosome", "ring", "rod", "globule")]
    specimen = SpecimenParameters(
        shape_zyx=(128, 256, 256),
        voxel_size=voxel_size,
        particles_per_class=75,
        slab_thickness_voxels=100,
        n_vesicles=3,
        n_gold_beads=5,
        carbon_edge=True,
    )
    tilt_series = TiltSeriesParameters(defocus_um=6.0, amplitude_contrast=0.1, snr=0.5)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    particle_density, distractors, _, _, particles = build_specimen(shapes, specimen, rng)
    specimen_seconds = time.perf_counter() - start
    start = time.perf_counter()
    reconstruct_tilt_series(
        particle_density + distractors, voxel_size, tilt_series, 100 * voxel_size, rng, particle_density
    )
    imaging_seconds = time.perf_counter() - start
    print(f"256 x 256 x 128 voxels, {len(particles)} particles, {len(tilt_series.angles_deg)} tilts")
    print(f"  specimen (placement + rendering): {specimen_seconds:.1f} s")
    print(f"  tilt series + CTF + noise + WBP:  {imaging_seconds:.1f} s")
    print(f"  total: {specimen_seconds + imaging_seconds:.1f} s, peak memory {peak_memory_mb():.0f} MB")

    if args.shrec:
        shrec_dir = find_shrec_dir(args.shrec_dir)
        if shrec_dir is None:
            return
        with tempfile.TemporaryDirectory() as out_dir:
            start = time.perf_counter()
            simulate_dataset(out_dir, preset="bench", n_tomograms=1, shrec_dir=shrec_dir)
            print(
                f"bench preset, 1 tomogram 512 x 512 x 200 (with writing 4 MRC files): "
                f"{time.perf_counter() - start:.1f} s, peak memory {peak_memory_mb():.0f} MB"
            )


if __name__ == "__main__":
    main()
