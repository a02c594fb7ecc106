"""Ready-made dataset recipes and the writer of a whole simulated dataset.

``bench_shifted`` images the bench specimen the way other real data differ from the training data
(the bench's second imaging setting): half the SNR (0.05), defocus 3 um instead of 4 (CTF zeros at
higher frequencies, less low-frequency contrast), tilts +-50 degrees instead of +-60 (a wider missing
wedge; 41 tilts 2.5 degrees apart, as many images as the bench's 3-degree ones, so the dose is split
alike), and ice 300 nm thick instead of 200: 100 nm more ice above and below the reconstructed volume,
holding nothing, which lowers the transmission of each tilt, the high tilts most. The simulator fixes the
SNR over the whole series, so the thicker ice moves noise from the low tilts to the high ones; the lower
SNR stands for the rest of what thicker ice costs. Same layouts and seeds give the same specimen (the
particles, gold beads and their positions) under both presets: only the imaging differs.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io import write_volume
from ..settings import SettingError
from ..shapes import ParticleShape, load_shape, procedural_shape
from ..tables import csv as particle_csv
from .imaging import TiltSeriesParameters
from .shrec19 import SHREC19_CLASSES, shrec19_layout, shrec19_shapes
from .specimen import SpecimenParameters
from .tomogram import simulate_tomogram

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Preset:
    """A ready-made dataset recipe.

    Attributes
    ----------
    shape_names : tuple of str
        Built-in shapes (the SHREC'19 presets use the SHREC'19 templates instead).
    specimen, tilt_series : parameters of every tomogram.
    n_tomograms : int
        Default number of tomograms.
    description : str
    write_mask : bool
        Also write each tomogram's region of interest, the ice slab, as ``<name>_mask.mrc``.
    shrec19 : bool
        The SHREC'19 templates are the classes and tomogram ``i`` holds SHREC'19 layout ``i``.
    """

    shape_names: tuple[str, ...]
    specimen: SpecimenParameters
    tilt_series: TiltSeriesParameters
    n_tomograms: int
    description: str = ""
    write_mask: bool = False
    shrec19: bool = False


BENCH = Preset(
    shape_names=SHREC19_CLASSES,
    specimen=SpecimenParameters(shape_zyx=(200, 512, 512), voxel_size=10.0, n_gold_beads=4),
    tilt_series=TiltSeriesParameters(defocus_um=4.0, amplitude_contrast=0.1, snr=0.1),
    n_tomograms=2,
    description="SHREC'19 layouts and templates, 512 x 512 x 200 at 10 A/voxel, SNR 0.1",
    shrec19=True,
)

TINY = Preset(
    shape_names=("ribosome", "ring", "rod"),
    specimen=SpecimenParameters(
        shape_zyx=(64, 96, 96),
        voxel_size=12.0,
        particles_per_class=20,
        slab_thickness_voxels=48,
        n_vesicles=1,
        n_gold_beads=2,
    ),
    tilt_series=TiltSeriesParameters(defocus_um=6.0, amplitude_contrast=0.1, snr=1.5),
    n_tomograms=3,
    description="3 easy classes in 96 x 96 x 64 voxels at high SNR, for fast tests",
)

PRESETS = {
    "tiny": TINY,
    "demo": Preset(
        shape_names=("ribosome", "ring", "rod", "globule"),
        specimen=SpecimenParameters(
            shape_zyx=(80, 160, 160),
            voxel_size=12.0,
            particles_per_class=25,
            slab_thickness_voxels=64,
            n_vesicles=2,
            n_gold_beads=3,
            carbon_edge=True,
        ),
        tilt_series=TiltSeriesParameters(defocus_um=6.0, amplitude_contrast=0.1, snr=0.5),
        n_tomograms=4,
        description="4 classes in 160 x 160 x 80 voxels at moderate SNR, with vesicles, gold beads and "
        "a carbon edge",
    ),
    # The tiny classes, voxel size and imaging in another specimen.
    "lamella": replace(
        TINY,
        specimen=replace(
            TINY.specimen,
            shape_zyx=(80, 96, 96),
            particles_per_class=15,
            slab_thickness_voxels=40,
            n_vesicles=0,
            n_gold_beads=0,
            slab_tilt_deg=12.0,
            outside_particles_per_class=3,
            outside_gold_beads=3,
        ),
        description="the tiny classes in a tilted 40-voxel slab of ice, under a carbon-like layer holding "
        "look-alikes of each class and gold beads (not targets); writes <name>_mask.mrc, the slab",
        write_mask=True,
    ),
    "bench": BENCH,
    "bench_shifted": replace(
        BENCH,
        specimen=replace(BENCH.specimen, ice_beyond_volume_a=1000.0),
        tilt_series=replace(
            BENCH.tilt_series,
            snr=0.05,
            defocus_um=3.0,
            tilt_min_deg=-50.0,
            tilt_max_deg=50.0,
            tilt_step_deg=2.5,
        ),
        description="the bench specimen imaged otherwise: SNR 0.05, defocus 3 um, tilts +-50 degrees, "
        "ice 300 nm thick (100 nm beyond the volume)",
    ),
}


def write_classes(out_dir: str | os.PathLike, shapes: list[ParticleShape], voxel_size: float) -> Path:
    """Write ``classes.json`` (id from 1 in the order of ``shapes``, name, radius_voxels, mask) and
    ``masks/<class>.mrc`` (voxel size ``voxel_size``, Angstrom) in ``out_dir``; returns the JSON's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    classes = []
    for class_id, shape in enumerate(shapes, start=1):
        mask_path = write_volume(
            out_dir / "masks" / f"{shape.name}.mrc", shape.mask.astype(np.int8), voxel_size
        )
        classes.append(
            {
                "id": class_id,
                "name": shape.name,
                "radius_voxels": max(1, int(round(shape.radius_voxels))),
                "mask": str(mask_path.relative_to(out_dir)),
            }
        )
    classes_path = out_dir / "classes.json"
    classes_path.write_text(json.dumps(classes, indent=2) + "\n")
    return classes_path


def simulate_dataset(
    out_dir: str | os.PathLike,
    preset: str = "tiny",
    n_tomograms: int | None = None,
    seed: int = 0,
    snr: float | None = None,
    templates: list[str | os.PathLike] | None = None,
    template_voxel_size: float | None = None,
    shrec_dir: str | os.PathLike | None = None,
    write_mask: bool | None = None,
) -> dict:
    """Simulate a dataset of tomograms with ground truth and write it to ``out_dir``.

    For each tomogram ``tomo_000``, ``tomo_001``...: ``<name>.mrc`` (the
    tomogram, voxel size in the header), ``<name>_particles.csv``,
    ``<name>_labels.mrc`` (class ids), ``<name>_occupancy.mrc`` (row ``i`` of
    the CSV is id ``i + 1``), and with ``write_mask`` ``<name>_mask.mrc`` (1 in
    the ice slab, where to search; 0 outside). Once: ``classes.json`` (id, name,
    radius_voxels, mask) and ``masks/<class>.mrc``. Progress is logged at INFO level.

    Parameters
    ----------
    out_dir : path
    preset : str
        A key of ``PRESETS``: ``tiny``, ``demo``, ``lamella``, ``bench`` or ``bench_shifted``.
    n_tomograms : int, optional
        The preset's default when None.
    seed : int
        Tomogram ``i`` uses seed ``(seed, i)``: datasets are reproducible.
    snr : float, optional
        Override the preset's SNR.
    templates : list of paths, optional
        MRC density maps replacing the preset's classes (tiny and demo only),
        resampled to the preset's voxel size.
    template_voxel_size : float, optional
        Voxel size (Angstrom) of the templates when their headers lack it.
    shrec_dir : path, optional
        The SHREC'19 data of the bench presets (see :func:`shrec19_dir`).
    write_mask : bool, optional
        Write each tomogram's slab mask; the preset's ``write_mask`` when None.

    Returns
    -------
    dict
        ``voxel_size`` (Angstrom), ``classes`` (path of classes.json),
        ``tomograms`` (list of dicts with ``name``, ``tomogram``, ``particles``,
        ``labels``, ``occupancy`` paths, and ``mask`` with ``write_mask``).
    """
    if preset not in PRESETS:
        raise InputError(f"Unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    recipe = PRESETS[preset]
    n_tomograms = recipe.n_tomograms if n_tomograms is None else n_tomograms
    if n_tomograms < 1:
        raise SettingError("n_tomograms", f"must be >= 1, got {n_tomograms}")
    tilt_series = recipe.tilt_series if snr is None else replace(recipe.tilt_series, snr=snr)
    specimen = recipe.specimen
    voxel_size = specimen.voxel_size
    if recipe.shrec19:
        if templates:
            raise InputError(
                f"The {preset} preset uses the SHREC'19 templates; custom templates need the tiny or "
                "demo preset"
            )
        if n_tomograms > 9:
            raise SettingError(
                "n_tomograms", f"SHREC'19 has 9 training layouts: give at most 9, not {n_tomograms}"
            )
        shapes = shrec19_shapes(voxel_size, shrec_dir)
    elif templates:
        shapes = [load_shape(path, voxel_size, template_voxel_size) for path in templates]
    else:
        shapes = [procedural_shape(name, voxel_size) for name in recipe.shape_names]
    names = [shape.name for shape in shapes]
    if len(set(names)) != len(names):
        raise InputError(f"Class names must be distinct, got {names}; rename the template files")

    out_dir = Path(out_dir)
    classes_path = write_classes(out_dir, shapes, voxel_size)

    written = []
    for index in range(n_tomograms):
        name = f"tomo_{index:03d}"
        start = time.perf_counter()
        logger.info(
            "[%d/%d] %s: simulating %s tomogram %d x %d x %d voxels, %d tilts, SNR %g",
            index + 1,
            n_tomograms,
            name,
            preset,
            specimen.shape_zyx[2],
            specimen.shape_zyx[1],
            specimen.shape_zyx[0],
            len(tilt_series.angles_deg),
            tilt_series.snr,
        )
        layout = shrec19_layout(index, shrec_dir) if recipe.shrec19 else None
        result = simulate_tomogram(
            shapes,
            specimen,
            tilt_series,
            seed=np.random.SeedSequence([seed, index]),
            layout=layout,
            name=name,
        )
        paths = {
            "name": name,
            "tomogram": write_volume(out_dir / f"{name}.mrc", result.tomogram, voxel_size),
            "particles": particle_csv.write(out_dir / f"{name}_particles.csv", result.particles),
            "labels": write_volume(out_dir / f"{name}_labels.mrc", result.labels, voxel_size),
            "occupancy": write_volume(out_dir / f"{name}_occupancy.mrc", result.occupancy, voxel_size),
        }
        if recipe.write_mask if write_mask is None else write_mask:
            paths["mask"] = write_volume(out_dir / f"{name}_mask.mrc", result.mask, voxel_size)
        written.append({key: str(value) for key, value in paths.items()})
        logger.info(
            "[%d/%d] %s: %d particles, %.1f s",
            index + 1,
            n_tomograms,
            name,
            len(result.particles),
            time.perf_counter() - start,
        )
    return {"voxel_size": voxel_size, "classes": str(classes_path), "tomograms": written}
