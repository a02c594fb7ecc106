"""Training throughput on this machine, and whether the patch prefetch keeps the model busy.

    python benchmarks/bench_train.py [--patch 48] [--batch 8] [--steps 5] [--epochs 2] [--precision auto]

Writes a synthetic 200 x 256 x 256 float32 tomogram with blobs to a temporary folder
(memory-mapped MRC, as in real use), trains for a few epochs and prints, per epoch,
patches per second, the time the model waited for batches and the time spent in
training steps (the first epoch includes graph compilation). Also times the patch
producer alone and, when the SHREC'19 data is found (``--shrec-dir``, see
benchmarks/shrec_data.py), label-map painting for a SHREC'19 tomogram (spheres and shapes).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import ndimage
from shrec_data import add_shrec_dir_option, find_shrec_dir

from deepfinder.core.io import read_volume, write_volume
from deepfinder.core.normalize import tomogram_stats
from deepfinder.core.particles import ParticleTable
from deepfinder.core.sampling import training_batches
from deepfinder.core.settings import PRECISIONS, TrainingSettings
from deepfinder.core.tables import xml as particle_xml
from deepfinder.core.targets import shape_targets, sphere_targets
from deepfinder.core.train import train

SHAPE = (200, 256, 256)


def synthetic(folder: Path) -> tuple[Path, Path, ParticleTable]:
    rng = np.random.default_rng(0)
    class_ids = np.repeat([1, 2, 3], 60)
    xyz = rng.uniform(10, np.array(SHAPE[::-1]) - 10, (len(class_ids), 3))
    table = ParticleTable(tomo="bench", class_id=class_ids, xyz=xyz)
    labels = sphere_targets(SHAPE, table, {1: 8, 2: 6, 3: 4})
    density = ndimage.gaussian_filter(
        np.select([labels == 1, labels == 2, labels == 3], [1.0, -1.0, 0.7], 0.0).astype(np.float32), 1.0
    )
    density += rng.normal(0, 0.5, SHAPE).astype(np.float32)
    return (
        write_volume(folder / "bench.mrc", density),
        write_volume(folder / "bench_labels.mrc", labels),
        table,
    )


def producer_rate(tomogram: Path, labels: Path, table: ParticleTable, settings: TrainingSettings) -> float:
    volume, label_map = read_volume(tomogram), read_volume(labels)
    stats = [tomogram_stats(volume)]
    started = time.perf_counter()
    n_batches = 10
    for _ in training_batches(
        [volume],
        [label_map],
        stats,
        np.zeros(len(table), int),
        table.zyx,
        table.class_id,
        patch_size=settings.patch_size,
        batch_size=settings.batch_size,
        n_batches=n_batches,
        rng=np.random.default_rng(0),
        shift_voxels=settings.shift_voxels,
        rotations=settings.rotations,
    ):
        pass
    return n_batches * settings.batch_size / (time.perf_counter() - started)


def shrec_targets(shrec_dir: Path) -> None:
    objects = particle_xml.read(shrec_dir / "shrec19" / "object_list_tomo0.xml").particles
    shape = (200, 512, 512)
    radii = dict(zip(range(1, 13), (6, 6, 3, 6, 6, 7, 6, 4, 4, 3, 10, 8)))
    names = "1bxn 1qvr 1s3x 1u6g 2cg9 3cf3 3d2f 3gl1 3h84 3qm1 4b4t 4d8q".split()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masks = {
            c: np.asarray(read_volume(shrec_dir / "shrec19" / "masks" / f"{name}.mrc", mmap=False)) > 0.5
            for c, name in enumerate(names, start=1)
        }
        started = time.perf_counter()
        spheres = sphere_targets(shape, objects, radii)
        sphere_seconds = time.perf_counter() - started
        started = time.perf_counter()
        shapes = shape_targets(shape, objects, masks)
        shape_seconds = time.perf_counter() - started
    print(
        f"SHREC'19 tomogram 0 ({len(objects)} particles, 512 x 512 x 200): spheres "
        f"{sphere_seconds:.1f} s ({np.count_nonzero(spheres)} voxels), shapes {shape_seconds:.1f} s "
        f"({np.count_nonzero(shapes)} voxels)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--shift", type=int, default=None, help="patch-centre jitter, voxels (the engine's default)"
    )
    parser.add_argument("--precision", choices=PRECISIONS, default="auto")
    add_shrec_dir_option(parser)
    args = parser.parse_args()
    shrec_dir = find_shrec_dir(args.shrec_dir)
    if shrec_dir is not None:
        shrec_targets(shrec_dir)
    shift = {} if args.shift is None else {"shift_voxels": args.shift}
    settings = TrainingSettings(
        patch_size=args.patch,
        batch_size=args.batch,
        epochs=args.epochs,
        steps_per_epoch=args.steps,
        validation_steps=1,
        loss="dice",
        precision=args.precision,
        **shift,
    )
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        tomogram, labels, table = synthetic(folder)
        rate = producer_rate(tomogram, labels, table, settings)
        print(
            f"patch producer alone (read from memory-mapped MRC, normalise, rotate): "
            f"{rate:.0f} patches/s at patch {args.patch}"
        )
        train(
            [tomogram],
            [labels],
            [table],
            folder / "out",
            4,
            settings,
            validation_fraction=0.2,
        )
        history = json.loads((folder / "out" / "history.json").read_text())
    for row in history:
        patches = args.steps * args.batch
        busy = row["step_seconds"] / (row["step_seconds"] + row["data_wait_seconds"])
        print(
            f"epoch {row['epoch']}: {patches / row['step_seconds']:.2f} patches/s in training steps, "
            f"{patches / (row['step_seconds'] + row['data_wait_seconds']):.2f} patches/s overall; "
            f"waited {row['data_wait_seconds']:.2f} s for data vs {row['step_seconds']:.1f} s in "
            f"train_step (model busy {100 * busy:.1f} %); epoch with validation {row['seconds']:.1f} s"
        )


if __name__ == "__main__":
    main()
