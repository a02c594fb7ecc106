"""Tomograms of bright blobs (the particles) and of bright cubes that look like them (not particles),
placed so far apart that a training patch centred on a blob never reaches a cube: a picker trained on
the blobs alone takes the cubes for blobs, as real pickers take gold beads or carbon for particles."""

from pathlib import Path

import numpy as np
from scipy import ndimage

from deepfinder.core.io import write_volume
from deepfinder.core.particles import ParticleTable
from deepfinder.core.targets import sphere_targets

BLOB_RADIUS = 4.0
CUBE_SIDE = 12
CUBE_ROWS_Y = (9, 24, 39)


def blobs_and_look_alikes(
    folder: Path,
    name: str,
    seed: int,
    shape_zyx=(48, 48, 48),
    n_blobs=8,
    blobs_below_x=16,
    cube_columns_x=(39,),
):
    """Write ``<name>.mrc`` (10 A/voxel) and its label map ``<name>_labels.mrc`` (the blobs, class 1).

    Blobs lie at x 6..``blobs_below_x``; three cubes of side 12 per column of ``cube_columns_x``
    (voxels), at y 9, 24 and 39.

    Returns
    -------
    tomogram, label_map : Path
    blobs : ParticleTable
        The particles, class 1.
    cubes : ParticleTable
        The cube centres, class 0 (background points).
    on_cubes : (z, y, x) bool array
        The cubes' voxels.
    """
    rng = np.random.default_rng(seed)
    blobs = ParticleTable(
        tomo=name,
        class_id=1,
        xyz=np.column_stack(
            [
                rng.uniform(6, blobs_below_x, n_blobs),
                rng.uniform(6, shape_zyx[1] - 6, n_blobs),
                rng.uniform(6, shape_zyx[0] - 6, n_blobs),
            ]
        ),
    )
    labels = sphere_targets(shape_zyx, blobs, {1: BLOB_RADIUS})
    centres = [
        (x, y, z) for x in cube_columns_x for y, z in zip(CUBE_ROWS_Y, rng.integers(10, shape_zyx[0] - 10, 3))
    ]
    cubes = ParticleTable(tomo=name, class_id=0, xyz=centres)
    on_cubes = np.zeros(shape_zyx, bool)
    half = CUBE_SIDE // 2
    for x, y, z in centres:
        on_cubes[z - half : z + half, y - half : y + half, x - half : x + half] = True
    density = ndimage.gaussian_filter(((labels == 1) | on_cubes).astype(float), 1.0) + rng.normal(
        0, 0.3, shape_zyx
    )
    tomogram = write_volume(folder / f"{name}.mrc", (10 * density + 50).astype(np.float32), 10.0)
    return tomogram, write_volume(folder / f"{name}_labels.mrc", labels, 10.0), blobs, cubes, on_cubes
