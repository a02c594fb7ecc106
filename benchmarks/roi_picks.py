"""Picks of a trained model on lamella tomograms, with and without the slab mask.

A model learns the tiny preset (2 tomograms, the ``quick`` training preset); it then
segments the tomograms of the ``lamella`` preset (same classes and sampling, a tilted slab under a
layer of look-alikes and gold) without and with their ``<name>_mask.mrc``. For each, the picks
outside the slab and the per-class F1 against the ground truth (distance rule, 6 voxels).

Usage:
    python benchmarks/roi_picks.py [--out FOLDER] [--lamellae N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
from simulated_model import train_on_shapes

from deepfinder.core.cluster import find_clusters
from deepfinder.core.evaluate import match_by_distance, precision_recall_f1
from deepfinder.core.io import read_volume
from deepfinder.core.logs import engine_log
from deepfinder.core.particles import ParticleTable
from deepfinder.core.roi import positions_inside
from deepfinder.core.segment import segment_tomogram
from deepfinder.core.settings import training_preset
from deepfinder.core.simulate import simulate_dataset
from deepfinder.core.tables import csv as particle_csv

TRAINING = training_preset("quick", seed=0)
TOLERANCE_VOXELS = 6


def trained_model(folder: Path) -> tuple[Path, list[dict]]:
    """Weights learnt on tiny tomo_000 and tomo_001, and the classes."""
    simulate_dataset(folder / "tiny", preset="tiny", n_tomograms=2, seed=0)
    best = train_on_shapes(folder / "tiny", ["tomo_000", "tomo_001"], folder, TRAINING)
    return best, json.loads((folder / "tiny" / "classes.json").read_text())


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--lamellae", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as temporary, engine_log():
        folder = Path(args.out or temporary)
        weights, classes = trained_model(folder)
        names = {c["id"]: c["name"] for c in classes}
        radius = {c["id"]: c["radius_voxels"] for c in classes}
        lamellae = simulate_dataset(folder / "lamella", preset="lamella", n_tomograms=args.lamellae, seed=1)
        found = {"without mask": [], "with mask": []}
        outside = dict.fromkeys(found, 0)
        references = []
        for entry in lamellae["tomograms"]:
            slab = np.asarray(read_volume(entry["mask"])) > 0
            references.append(particle_csv.read(entry["particles"]).particles)
            for case, mask in (("without mask", None), ("with mask", slab)):
                labels_path = folder / f"{entry['name']}_{case.replace(' ', '_')}.mrc"
                segment_tomogram(entry["tomogram"], weights, labels_path, mask=mask)
                picks = find_clusters(
                    np.asarray(read_volume(labels_path)), radius, tomo=entry["name"], mask=mask
                ).particles
                outside[case] += int((~positions_inside(slab, picks.xyz)).sum())
                found[case].append(picks)
        reference = ParticleTable.concat(references)
        print(f"\n{len(lamellae['tomograms'])} lamella tomograms, {len(reference)} particles in the slabs")
        print("| | picks | outside the slab | " + " | ".join(f"F1 {n}" for n in names.values()) + " |")
        print("|---|---|---|" + "---|" * len(names))
        for case, tables in found.items():
            picks = ParticleTable.concat(tables)
            rows = precision_recall_f1(match_by_distance(picks, reference, TOLERANCE_VOXELS), names)
            f1 = {row.name: row.f1 for row in rows if row.class_id is not None}
            print(
                f"| {case} | {len(picks)} | {outside[case]} | "
                + " | ".join(f"{f1[n]:.2f}" for n in names.values())
                + " |"
            )


if __name__ == "__main__":
    main()
