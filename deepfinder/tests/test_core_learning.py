"""Learning: the engine learns the simulator's tiny preset end to end.

Simulate -> shape targets -> train -> segment a held-out tomogram -> cluster ->
evaluate: every class must reach F1 >= 0.9. This is the slowest test of the
engine (a few minutes on 2 CPU cores); it fails when any stage stops working
with the others (orientation of targets, normalisation, loss, tiling, clustering).
"""

import json

import numpy as np
import pytest

from benchmarks.simulated_model import train_on_shapes
from deepfinder.core.cluster import cluster_labels
from deepfinder.core.evaluate import format_table, match_by_distance, precision_recall_f1
from deepfinder.core.io import read_particles_csv, read_volume
from deepfinder.core.segment import segment_tomogram
from deepfinder.core.settings import training_preset
from deepfinder.core.simulate import simulate_dataset

pytestmark = pytest.mark.slow

TRAINING = training_preset("quick", seed=0)
# About the particle radii (5 to 8 voxels).
TOLERANCE_VOXELS = 6


@pytest.fixture(scope="module")
def learnt(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny")
    dataset = simulate_dataset(folder, preset="tiny", n_tomograms=3, seed=0)
    best = train_on_shapes(folder, ["tomo_000", "tomo_001"], folder, TRAINING)
    classes = json.loads((folder / "classes.json").read_text())
    test = dataset["tomograms"][2]
    segment_tomogram(test["tomogram"], best, folder / "predicted.mrc")
    radius = {c["id"]: c["radius_voxels"] for c in classes}
    found = cluster_labels(np.asarray(read_volume(folder / "predicted.mrc")), radius, tomo=test["name"])
    reference = read_particles_csv(test["particles"])
    result = match_by_distance(found, reference, tolerance_voxels=TOLERANCE_VOXELS)
    return precision_recall_f1(result, {c["id"]: c["name"] for c in classes})


def test_every_class_of_the_tiny_preset_is_found_with_f1_at_least_0_9(learnt):
    scores = {row.name: row.f1 for row in learnt if row.class_id is not None}
    assert set(scores) == {"ribosome", "ring", "rod"}
    assert min(scores.values()) >= 0.9, format_table(learnt)
