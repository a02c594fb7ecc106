"""Score cut-offs: found on score distributions of known separation, from a reference sweep, applied."""

import json

import numpy as np
import pytest

from deepfinder.core.errors import InputError
from deepfinder.core.evaluate import threshold_sweep
from deepfinder.core.particles import ParticleTable
from deepfinder.core.threshold import (
    METHODS,
    apply_thresholds,
    automatic_thresholds,
    best_thresholds,
    fit_scores,
    read_thresholds,
    thresholds_of,
    write_thresholds,
)


def two_populations(n_low=30, n_high=60, low=0.4, high=0.9, spread=0.04, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(low, spread, n_low), rng.normal(high, spread, n_high)


@pytest.mark.parametrize("method", METHODS)
def test_two_separated_populations_are_cut_between_them(method):
    low, high = two_populations()
    fit = fit_scores(np.concatenate([high, low]), method)
    assert fit.separated
    assert low.max() < fit.threshold <= high.min()
    assert fit.means[0] == pytest.approx(0.4, abs=0.03) and fit.means[1] == pytest.approx(0.9, abs=0.03)


@pytest.mark.parametrize("method", METHODS)
def test_the_cut_follows_the_gap_wherever_it_lies(method):
    low, high = two_populations(n_low=50, n_high=20, low=0.55, high=0.75, spread=0.02, seed=3)
    fit = fit_scores(np.concatenate([low, high]), method)
    assert low.max() < fit.threshold <= high.min()


@pytest.mark.parametrize("method", METHODS)
def test_one_population_loses_nothing(method):
    scores = np.random.default_rng(1).normal(0.85, 0.05, 200)
    fit = fit_scores(scores, method)
    assert not fit.separated
    particles = ParticleTable(tomo="t", class_id=1, xyz=np.zeros((200, 3)), score=scores)
    keep, lost = apply_thresholds(particles, thresholds_of({1: fit}))
    assert keep.all() and lost == {1: 0}


def test_too_few_scores_are_not_split():
    assert not fit_scores([0.1, 0.1, 0.2, 0.9, 0.95, 0.9]).separated


@pytest.mark.parametrize("method", METHODS)
def test_cluster_sizes_are_split_on_a_log_scale(method):
    rng = np.random.default_rng(2)
    specks = rng.integers(3, 30, 40)
    particles = rng.integers(300, 700, 40)
    fit = fit_scores(np.concatenate([specks, particles]).astype(float), method, log_scale=True)
    assert fit.log_scale and specks.max() < fit.threshold <= particles.min()


def test_unknown_method_is_refused():
    with pytest.raises(InputError, match="gmm"):
        fit_scores(np.arange(20.0), "kmeans")


def test_automatic_thresholds_fit_each_class_on_its_own():
    low, high = two_populations()
    alike = np.random.default_rng(4).normal(0.7, 0.05, 50)
    scores = np.concatenate([low, high, alike])
    class_id = np.repeat([1, 1, 2], [len(low), len(high), len(alike)])
    particles = ParticleTable(tomo="t", class_id=class_id, xyz=np.zeros((len(scores), 3)), score=scores)
    fits = automatic_thresholds(particles)
    assert fits[1].separated and not fits[2].separated
    keep, lost = apply_thresholds(particles, thresholds_of(fits))
    assert lost == {1: len(low), 2: 0}
    assert np.array_equal(particles.select(keep).score, np.concatenate([high, alike]))


def test_applying_thresholds_drops_low_picks_keeps_scores_and_counts_losses():
    particles = ParticleTable(
        tomo="t",
        class_id=[1, 1, 1, 2, 2, 3],
        xyz=np.arange(18.0).reshape(6, 3),
        score=[0.2, 0.5, np.nan, 0.3, 0.9, 0.1],
    )
    keep, lost = apply_thresholds(particles, {1: 0.5, 2: 0.4})
    kept = particles.select(keep)
    # Equal to the threshold is kept, unknown (NaN) is kept, a class without threshold is untouched.
    assert kept.class_id.tolist() == [1, 1, 2, 3]
    np.testing.assert_array_equal(kept.score, [0.5, np.nan, 0.9, 0.1])
    np.testing.assert_array_equal(kept.xyz, particles.xyz[[1, 2, 4, 5]])
    assert lost == {1: 1, 2: 1, 3: 0}


def test_best_thresholds_of_a_sweep_drop_the_false_positives():
    reference = ParticleTable(tomo="t", class_id=[1] * 5 + [2] * 5, xyz=np.arange(30.0).reshape(10, 3) * 10)
    false_positives = ParticleTable(
        tomo="t", class_id=[1, 1, 2], xyz=[[500, 500, 500], [600, 600, 600], [700, 700, 700]]
    )
    detected = ParticleTable.concat(
        [
            ParticleTable(
                tomo="t",
                class_id=reference.class_id,
                xyz=reference.xyz + 1,
                score=[0.8, 0.85, 0.9, 0.95, 0.99, 0.6, 0.7, 0.75, 0.8, 0.9],
            ),
            ParticleTable(
                tomo="t", class_id=false_positives.class_id, xyz=false_positives.xyz, score=[0.3, 0.4, 0.5]
            ),
        ]
    )
    curves = threshold_sweep(detected, reference, np.linspace(0, 1, 101), tolerance_voxels=3)
    best = best_thresholds(curves)
    assert set(best) == {1, 2}
    assert 0.4 < best[1][0] <= 0.8 and best[1][1] == 1.0
    assert 0.5 < best[2][0] <= 0.6 and best[2][1] == 1.0
    keep, lost = apply_thresholds(detected, {k: t for k, (t, _) in best.items()})
    assert lost == {1: 2, 2: 1}


def test_thresholds_file_round_trip_and_refusal(tmp_path):
    path = write_thresholds(
        tmp_path / "thresholds.json", {1: 0.55, 2: 0.7}, {1: 0.9, 2: 0.8}, {1: "ribosome", 2: "ring"}, "sweep"
    )
    assert read_thresholds(path) == {1: 0.55, 2: 0.7}
    assert json.loads(path.read_text())["classes"]["1"] == {"threshold": 0.55, "name": "ribosome", "f1": 0.9}
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"1": 0.5}))
    with pytest.raises(InputError, match="not a thresholds file"):
        read_thresholds(other)
