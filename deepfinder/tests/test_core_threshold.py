"""Score cut-offs: found on score distributions of known separation, from a reference sweep, applied."""

import json

import numpy as np
import pytest

from deepfinder.core.errors import InputError
from deepfinder.core.evaluate import threshold_sweep
from deepfinder.core.particles import ParticleTable
from deepfinder.core.settings import ClusterSettings, write_settings
from deepfinder.core.tables import csv as particle_csv
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
    # The lamella demo's ribosomes: 14 picks at about 0.955 and one at 0.928, all true particles.
    scores = np.r_[np.random.default_rng(5).normal(0.955, 0.002, 14), 0.928]
    assert not fit_scores(scores).separated


@pytest.mark.parametrize("method", METHODS)
def test_a_lone_low_pick_is_not_a_population(method):
    scores = np.r_[np.random.default_rng(6).normal(0.9, 0.01, 40), 0.5]
    assert not fit_scores(scores, method).separated


@pytest.mark.parametrize("method", METHODS)
def test_overlapping_populations_are_not_split(method):
    low, high = two_populations(n_low=60, n_high=60, low=0.80, high=0.86, spread=0.04, seed=7)
    assert not fit_scores(np.concatenate([low, high]), method).separated


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
    reference = ParticleTable(
        tomo="t", class_id=[1] * 5 + [2] * 5 + [3] * 2, xyz=np.arange(36.0).reshape(12, 3) * 10
    )
    false_positives = ParticleTable(
        tomo="t", class_id=[1, 1, 2], xyz=[[500, 500, 500], [600, 600, 600], [700, 700, 700]]
    )
    detected = ParticleTable.concat(
        [
            ParticleTable(
                tomo="t",
                class_id=reference.class_id,
                xyz=reference.xyz + 1,
                score=[0.8, 0.85, 0.9, 0.95, 0.99, 0.6, 0.7, 0.75, 0.8, 0.9, 0.2, 0.9],
            ),
            ParticleTable(
                tomo="t", class_id=false_positives.class_id, xyz=false_positives.xyz, score=[0.3, 0.4, 0.5]
            ),
        ]
    )
    curves = threshold_sweep(detected, reference, np.linspace(0, 1, 101), tolerance_voxels=3)
    best = best_thresholds(curves, detected)
    assert set(best) == {1, 2, 3}
    # Halfway between the highest false positive and the lowest true positive.
    assert best[1] == (pytest.approx(0.6), 1.0)
    assert best[2] == (pytest.approx(0.55), 1.0)
    # Nothing to drop: no cut.
    assert best[3] == (-np.inf, 1.0)
    keep, lost = apply_thresholds(detected, {k: t for k, (t, _) in best.items()})
    assert lost == {1: 2, 2: 1, 3: 0}


def test_thresholds_file_round_trip_and_refusal(tmp_path):
    path = write_thresholds(
        tmp_path / "thresholds.json",
        {1: 0.55, 2: 0.7, 3: -np.inf},
        {1: 0.9, 2: 0.8},
        {1: "ribosome", 2: "ring"},
        "sweep",
    )
    assert read_thresholds(path) == {1: 0.55, 2: 0.7, 3: -np.inf}
    assert json.loads(path.read_text())["classes"]["1"] == {"threshold": 0.55, "name": "ribosome", "f1": 0.9}
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"1": 0.5}))
    with pytest.raises(InputError, match="not a thresholds file"):
        read_thresholds(other)


# --------------------------------------------------------------------------- command line


def _label_map_with_specks(folder, n_particles=12, n_specks=8):
    """A label map of class 1: balls of radius 3 and specks of one voxel, with a score map
    that is 0.9 on the balls and 0.4 on the specks; (paths, truth)."""
    from deepfinder.core.io import write_volume
    from deepfinder.core.segment import score_map_paths
    from deepfinder.core.targets import sphere_targets

    shape = (24, 24 * -(-max(n_particles, n_specks) // 6), 96)
    balls = np.array([[10 + 14 * (i % 6), 12 + 24 * (i // 6), 12] for i in range(n_particles)], float)
    specks = np.array([[10 + 14 * (i % 6), 12 + 24 * (i // 6), 4] for i in range(n_specks)], int)
    truth = ParticleTable(tomo="tomo", class_id=1, xyz=balls)
    labels = sphere_targets(shape, truth, {1: 3}).astype(np.int8)
    scores = np.where(labels > 0, 0.9, 0.0).astype(np.float32)
    labels[tuple(specks[:, ::-1].T)] = 1
    scores[tuple(specks[:, ::-1].T)] = 0.4
    write_volume(folder / "tomo.mrc", labels, 10.0)
    write_volume(score_map_paths(folder / "scores.mrc", 2)[1], scores, 10.0)
    particle_csv.write(folder / "truth.csv", truth)
    return truth


def _cluster(folder, *options):
    from deepfinder.core.cli import main

    main(
        ["cluster", "--labels", str(folder / "tomo.mrc"), "--radius", "3", "--min-size", "0"]
        + ["--output", str(folder / "found.csv"), *options]
    )

    return particle_csv.read(folder / "found.csv").particles


def test_cluster_command_applies_a_given_threshold_and_reports_the_losses(tmp_path, capsys):
    _label_map_with_specks(tmp_path)
    found = _cluster(tmp_path, "--threshold", "1:10")
    # Without score maps the score is the cluster size: specks of 1 voxel, balls of 123.
    assert len(found) == 12 and np.all(found.score > 100)
    assert "Wrote 12 particles" in capsys.readouterr().out
    found = _cluster(
        tmp_path,
        "--scores",
        str(tmp_path / "scores.mrc"),
        "--threshold",
        "0.5",
        "--sizes",
        str(tmp_path / "n"),
    )
    np.testing.assert_allclose(found.score, 0.9, atol=1e-3)
    assert "lost per class: 1: 8" in capsys.readouterr().out
    # The cluster sizes written are those of the picks kept, in table order.
    assert np.loadtxt(tmp_path / "n").tolist() == [123] * 12


def test_cluster_command_finds_the_threshold_automatically_and_writes_the_fit(tmp_path, capsys):
    from deepfinder.core.threshold import read_threshold_report
    from deepfinder.figures.pictures import write_png
    from deepfinder.figures.score_fits import threshold_page

    _label_map_with_specks(tmp_path, n_particles=24, n_specks=12)  # enough picks to fit
    found = _cluster(
        tmp_path,
        "--scores",
        str(tmp_path / "scores.mrc"),
        "--threshold",
        "auto",
        "--threshold-report",
        str(tmp_path / "cut.json"),
    )
    assert len(found) == 24
    assert "lost per class: 1: 12" in capsys.readouterr().out
    report = read_threshold_report(tmp_path / "cut.json")
    assert len(report.scores) == 36 and report.lost == {1: 12} and 0.4 < report.thresholds[1] <= 0.9
    assert report.fits[1].separated and not report.log_scale
    picture = write_png(tmp_path / "cut.png", threshold_page(tmp_path / "cut.json", ["background", "ball"]))
    assert (tmp_path / "cut.png").stat().st_size > 10_000 and picture.endswith("cut.png")


def test_evaluate_hands_its_best_thresholds_to_cluster(tmp_path, capsys):
    from deepfinder.core.cli import main

    _label_map_with_specks(tmp_path)
    _cluster(tmp_path, "--scores", str(tmp_path / "scores.mrc"))
    (tmp_path / "found.csv").rename(tmp_path / "all.csv")
    main(
        ["evaluate", "--detected", str(tmp_path / "all.csv"), "--reference", str(tmp_path / "truth.csv")]
        + ["--tolerance", "2", "--sweep", "10", "--thresholds-output", str(tmp_path / "best.json")]
    )
    assert "class 1: best F1 1.000 with score >= 0.65" in capsys.readouterr().out
    assert 0.4 < read_thresholds(tmp_path / "best.json")[1] <= 0.9
    found = _cluster(
        tmp_path, "--scores", str(tmp_path / "scores.mrc"), "--thresholds-from", str(tmp_path / "best.json")
    )
    assert len(found) == 12 and "lost per class: 1: 8" in capsys.readouterr().out


def test_a_cluster_settings_file_gives_the_radii_sizes_and_thresholds(tmp_path, capsys):
    from deepfinder.core.cli import main

    _label_map_with_specks(tmp_path)
    by_options = _cluster(tmp_path, "--threshold", "1:10")
    settings = ClusterSettings(radius=("1:3",), min_size=("0",), threshold=("1:10",))
    write_settings(tmp_path / "cluster.json", settings)
    labels = ["cluster", "--labels", str(tmp_path / "tomo.mrc")]
    main([*labels, "--settings", str(tmp_path / "cluster.json"), "--output", str(tmp_path / "by_file.csv")])
    by_file = particle_csv.read(tmp_path / "by_file.csv").particles
    assert len(by_file) == 12 and np.array_equal(by_file.xyz, by_options.xyz)

    write_settings(tmp_path / "no_radius.json", ClusterSettings(threshold=("auto",)))
    with pytest.raises(SystemExit) as exit_:
        main([*labels, "--settings", str(tmp_path / "no_radius.json"), "--output", str(tmp_path / "x.csv")])
    assert exit_.value.code == 2 and "--radius: give the particle radius" in capsys.readouterr().err
    assert not (tmp_path / "x.csv").exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (["--threshold", "1:high"], "--threshold: cannot read 'high'"),
        (["--threshold", "0.5", "--thresholds-from", "t.json"], "the thresholds of t.json: give one"),
        (["--threshold-report", "r.json"], "--threshold-report needs --threshold or --thresholds-from"),
        (["--thresholds-from", "missing.json"], "missing.json"),
    ],
)
def test_cluster_command_refuses_bad_threshold_options(tmp_path, capsys, options, message):
    _label_map_with_specks(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        _cluster(tmp_path, *options)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "found.csv").exists()


def test_evaluate_command_refuses_a_thresholds_output_without_a_sweep(tmp_path, capsys):
    from deepfinder.core.cli import main

    truth = _label_map_with_specks(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main(
            [
                "evaluate",
                "--detected",
                str(tmp_path / "truth.csv"),
                "--reference",
                str(tmp_path / "truth.csv"),
            ]
            + ["--tolerance", "2", "--thresholds-output", str(tmp_path / "best.json")]
        )
    assert exit_.value.code == 2 and "need --sweep N" in capsys.readouterr().err
    assert len(truth) == 12 and not (tmp_path / "best.json").exists()
