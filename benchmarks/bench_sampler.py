"""Training-patch sampler alone: patches per second, without a model.

    python benchmarks/bench_sampler.py [--shape 200 512 512] [--patch 48] [--batch 8]
                                       [--batches 300] [--repeats 3] [--workers 2]

Writes a float32 tomogram and an int8 label map of ``--shape`` (z, y, x) to a
temporary folder as MRC files, opens them memory-mapped as training does, and
draws batches with the training defaults (class-balanced draws over 12
particle classes, random shifts of 13 voxels, half the patches rotated about
the tilt axis). A consumer that does nothing takes the batches, so the figure
is what the sampler can feed a model that is never the bottleneck. Two
pipelines are timed, each ``--repeats`` times after one pass that maps the
files' pages, in patches per second and in CPU time per patch (all threads;
on a machine shared with other jobs, 1000 over it bounds what one free core
would give):

- ``1 worker``: one thread cuts one batch ahead of the consumer, as a
  single background producer does;
- ``--workers``: :func:`deepfinder.core.sampling.training_batches` with that
  many threads cutting batches ahead of the consumer (the default, 2, is
  what training uses).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from deepfinder.core.io import create_volume, read_volume
from deepfinder.core.normalize import tomogram_stats
from deepfinder.core.sampling import BATCHES_AHEAD, SAMPLER_WORKERS, training_batches
from deepfinder.core.settings import TrainingSettings

log = logging.getLogger("bench_sampler")

N_CLASSES = 12
PARTICLES_PER_CLASS = 150
SLAB = 16


def write_data(folder: Path, shape_zyx: tuple[int, int, int]) -> tuple[Path, Path]:
    """A Gaussian-noise float32 tomogram and a random int8 label map, written slab by slab."""
    rng = np.random.default_rng(0)
    paths = folder / "tomogram.mrc", folder / "labels.mrc"
    with create_volume(paths[0], shape_zyx, np.float32) as tomogram:
        with create_volume(paths[1], shape_zyx, np.int8) as labels:
            for z in range(0, shape_zyx[0], SLAB):
                n = min(SLAB, shape_zyx[0] - z)
                tomogram.data[z : z + n] = rng.normal(size=(n, *shape_zyx[1:]))
                labels.data[z : z + n] = rng.integers(0, N_CLASSES + 1, size=(n, *shape_zyx[1:]))
    return paths


def rate(batches: Callable[[], Iterator], n_patches: int) -> tuple[float, float]:
    """Patches per second of consuming every batch of ``batches()``, and CPU milliseconds per patch
    (all the process's threads)."""
    started, cpu_started = time.perf_counter(), time.process_time()
    stream = batches()
    try:
        for _ in stream:
            pass
    finally:
        stream.close()
    return n_patches / (time.perf_counter() - started), (time.process_time() - cpu_started) / n_patches * 1e3


def main() -> None:
    defaults = TrainingSettings()
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--shape", type=int, nargs=3, default=(200, 512, 512), help="(z, y, x) voxels")
    parser.add_argument("--patch", type=int, default=defaults.patch_size, help="patch edge, voxels")
    parser.add_argument("--batch", type=int, default=defaults.batch_size)
    parser.add_argument("--batches", type=int, default=300, help="batches per timed pass")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=SAMPLER_WORKERS, help="threads cutting batches")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    shape = tuple(args.shape)
    rng = np.random.default_rng(1)
    class_ids = np.repeat(np.arange(1, N_CLASSES + 1), PARTICLES_PER_CLASS)
    centres = rng.uniform(0, np.array(shape), size=(len(class_ids), 3))
    with tempfile.TemporaryDirectory() as folder:
        tomogram_path, labels_path = write_data(Path(folder), shape)
        volumes, label_maps = [read_volume(tomogram_path)], [read_volume(labels_path)]
        stats = [tomogram_stats(volumes[0])]

        def batches(workers: int, batches_ahead: int) -> Iterator:
            return training_batches(
                volumes,
                label_maps,
                stats,
                np.zeros(len(class_ids), int),
                centres,
                class_ids,
                patch_size=args.patch,
                batch_size=args.batch,
                n_batches=args.batches,
                rng=np.random.default_rng(0),
                bootstrap=defaults.bootstrap,
                shift_voxels=defaults.shift_voxels,
                workers=workers,
                batches_ahead=batches_ahead,
            )

        pipelines = {
            "1 worker": lambda: batches(1, 1),
            f"{args.workers} workers": lambda: batches(args.workers, max(BATCHES_AHEAD, args.workers)),
        }
        n_patches = args.batches * args.batch
        rate(pipelines["1 worker"], n_patches)  # maps the files' pages once
        for name, pipeline in pipelines.items():
            rates, cpu = zip(*(rate(pipeline, n_patches) for _ in range(args.repeats)))
            log.info(
                "%-10s %d patches of %d^3: %s patches/s (median %.0f), %.2f CPU-ms per patch (median)",
                name,
                n_patches,
                args.patch,
                ", ".join(f"{r:.0f}" for r in rates),
                np.median(rates),
                np.median(cpu),
            )


if __name__ == "__main__":
    main()
