"""Test datasets of the DeepFinder plugin, generated on first use (never downloaded).

``DataSet.getDataSet("deepfinder_tiny")`` gives a folder in SCIPION_TESTS with
simulated tomograms ``tomo_000.mrc``..., their ground truth
(``tomo_000_particles.csv``, label and occupancy maps), ``classes.json``, class
shape masks, and per-class coordinate files ``class<k>/tomo_000.txt`` (x y z in
voxels) that tomo's "import coordinates 3D" reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from pyworkflow.tests import DataSet

PRESET_TOMOGRAMS = {"tiny": 3, "demo": 4}
COMPLETE_MARK = ".generated"


class GeneratedDataSet(DataSet):
    """A pyworkflow DataSet whose files the simulator writes when they are absent."""

    def __init__(self, preset: str, seed: int = 0):
        self.preset, self.seed = preset, seed
        names = [f"tomo_{i:03d}" for i in range(PRESET_TOMOGRAMS[preset])]
        files = {name: f"{name}.mrc" for name in names}
        files.update({f"{name}_particles": f"{name}_particles.csv" for name in names})
        files["classes"] = "classes.json"
        super().__init__(f"deepfinder_{preset}", f"deepfinder_{preset}", files)

    def getPath(self):
        self.ensure()
        return super().getPath()

    def getFile(self, key):
        self.ensure()
        return super().getFile(key)

    def classes(self) -> list[dict]:
        """The simulated classes: id, name, radius_voxels, mask file."""
        return json.loads(Path(self.getFile("classes")).read_text())

    def voxel_size(self) -> float:
        """Voxel size of the simulated tomograms, in Angstrom."""
        from ..core.io import read_voxel_size

        return read_voxel_size(self.getFile("tomo_000"))

    def ensure(self) -> None:
        folder = Path(self.path)
        if (folder / COMPLETE_MARK).exists():
            return
        from ..core.io import read_particles_csv
        from ..core.simulate import simulate_dataset

        simulate_dataset(
            folder,
            preset=self.preset,
            n_tomograms=PRESET_TOMOGRAMS[self.preset],
            seed=self.seed,
            progress=False,
        )
        for csv in sorted(folder.glob("*_particles.csv")):
            particles = read_particles_csv(csv)
            tomo = csv.name[: -len("_particles.csv")]
            for class_id in np.unique(particles.class_id):
                class_folder = folder / f"class{class_id}"
                class_folder.mkdir(exist_ok=True)
                np.savetxt(class_folder / f"{tomo}.txt", particles.of_class(class_id).xyz, fmt="%.2f")
        (folder / COMPLETE_MARK).touch()


TINY = GeneratedDataSet("tiny")
DEMO = GeneratedDataSet("demo")
