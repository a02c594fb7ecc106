import numpy as np
import pytest

from deepfinder.core.evaluate import (
    confusion_by_distance,
    confusion_by_occupancy,
    format_confusion,
    format_table,
    match_by_distance,
    match_by_occupancy,
    precision_recall_f1,
    read_scores_csv,
    read_sweep_csv,
    threshold_sweep,
    write_scores_csv,
    write_sweep_csv,
)
from deepfinder.core.particles import ParticleTable
from deepfinder.core.tables import csv as particle_csv


def table(xyz, class_id, score=None, tomo="t"):
    return ParticleTable(tomo=tomo, class_id=class_id, xyz=xyz, score=score)


def row(rows, class_id):
    return next(r for r in rows if r.class_id == class_id)


def test_distance_matching_is_one_to_one_within_tolerance_and_class():
    reference = table([[10, 10, 10], [30, 10, 10], [50, 10, 10]], [1, 1, 2])
    detected = table(
        [
            [11, 10, 10],  # TP for reference 0
            [10, 11, 10],  # second detection on reference 0: FP
            [36, 10, 10],  # 6 voxels off reference 1: FP at tolerance 3
            [50, 10, 11],
        ],  # next to reference 2 but wrong class: FP
        [1, 1, 1, 1],
    )
    result = match_by_distance(detected, reference, tolerance_voxels=3)
    assert result.detected_hit.tolist() == [True, False, False, False]
    assert result.reference_found.tolist() == [True, False, False]
    rows = precision_recall_f1(result, {1: "ribosome", 2: "proteasome"})
    assert (row(rows, 1).precision, row(rows, 1).recall) == (0.25, 0.5)
    assert row(rows, 2).recall == 0 and row(rows, 2).f1 == 0
    overall = row(rows, None)
    assert (overall.true_positives, overall.n_detected, overall.n_reference) == (1, 4, 3)
    assert overall.f1 == pytest.approx(2 * 1 / (4 + 3))


def test_distance_matching_finds_the_most_pairs_where_greedy_would_not():
    # Greedy-by-distance takes the 0.9 pair first and leaves the second detection unmatched.
    reference = table([[0, 0, 0], [2, 0, 0]], [1, 1])
    detected = table([[0.9, 0, 0], [-1.2, 0, 0]], [1, 1])
    result = match_by_distance(detected, reference, tolerance_voxels=1.5)
    assert result.detected_match.tolist() == [1, 0]


def test_distance_matching_keeps_tomograms_apart():
    reference = table([[5, 5, 5], [5, 5, 5]], [1, 1], tomo=["a", "b"])
    detected = table([[5, 5, 5]], [1], tomo=["b"])
    result = match_by_distance(detected, reference, tolerance_voxels=2)
    assert result.detected_match.tolist() == [1]


def occupancy_case():
    occupancy = np.zeros((20, 20, 20), dtype=np.int16)
    occupancy[2:8, 2:8, 2:8] = 1  # reference particle 0, class 1
    occupancy[10:16, 10:16, 2:8] = 2  # reference particle 1, class 2
    reference = table([[5, 5, 5], [5, 13, 13]], [1, 2])
    return occupancy, reference


def test_occupancy_hits_count_once_per_particle_best_score_first():
    occupancy, reference = occupancy_case()
    detected = table(
        [
            [3, 3, 3],  # inside particle 0, low score
            [6, 6, 6],  # inside particle 0, best score: the TP
            [4, 12, 12],  # inside particle 1 but class 1: FP
            [15, 15, 15],  # in background: FP
            [40, 3, 3],
        ],  # outside the volume: FP
        [1, 1, 1, 1, 1],
        score=[0.2, 0.9, 0.5, 0.5, 0.5],
    )
    result = match_by_occupancy(detected, occupancy, reference)
    assert result.detected_hit.tolist() == [False, True, False, False, False]
    assert result.reference_found.tolist() == [True, False]
    rows = precision_recall_f1(result)
    assert (row(rows, 1).precision, row(rows, 1).recall) == (0.2, 1.0)
    assert row(rows, 2).recall == 0


def test_confusion_shows_which_class_a_detection_really_lies_on():
    occupancy, reference = occupancy_case()
    detected = table([[6, 6, 6], [4, 12, 12], [5, 13, 13], [15, 15, 15]], [1, 1, 2, 2])
    classes, counts = confusion_by_occupancy(detected, occupancy, reference)
    assert classes.tolist() == [0, 1, 2]
    # class 1: one on a class-1 particle, one on a class-2 particle; class 2: one right, one on nothing
    assert counts.tolist() == [[0, 0, 0], [0, 1, 1], [1, 0, 1]]
    text = format_confusion(classes, counts, {1: "ribosome", 2: "proteasome"})
    assert text.splitlines()[1].split() == ["ribosome", "0", "1", "1"]


def test_confusion_by_distance_names_the_nearest_particle_of_any_class():
    reference = table([[10, 10, 10], [30, 10, 10]], [1, 2])
    detected = table(
        [
            [11, 10, 10],  # class 1 on the class-1 particle
            [29, 10, 10],  # class 1 on the class-2 particle
            [20, 10, 10],  # class 2, 10 voxels from both: on nothing
            [31, 11, 10],
        ],  # class 2 on the class-2 particle
        [1, 1, 2, 2],
    )
    classes, counts = confusion_by_distance(detected, reference, tolerance_voxels=3)
    assert classes.tolist() == [0, 1, 2]
    assert counts.tolist() == [[0, 0, 0], [0, 1, 1], [1, 0, 1]]
    with pytest.raises(ValueError, match="tolerance_voxels"):
        confusion_by_distance(detected, reference, tolerance_voxels=0)


def test_threshold_sweep_trades_recall_for_precision():
    reference = table([[10, 10, 10], [30, 10, 10]], [1, 1])
    detected = table([[10, 10, 10], [30, 10, 10], [50, 50, 50]], [1, 1, 1], score=[0.9, 0.3, 0.6])
    curves = threshold_sweep(detected, reference, [0.0, 0.5, 0.95], tolerance_voxels=2)
    np.testing.assert_allclose(curves.curve("recall", 1), [1.0, 0.5, 0.0])
    np.testing.assert_allclose(curves.curve("precision"), [2 / 3, 0.5, np.nan])
    occupancy, occ_reference = occupancy_case()
    occ_curves = threshold_sweep(
        table([[5, 5, 5]], [1], score=[0.7]), occ_reference, [0.5, 0.8], occupancy_map=occupancy
    )
    np.testing.assert_allclose(occ_curves.curve("f1"), [2 / 3, 0.0])
    with pytest.raises(ValueError, match="exactly one"):
        threshold_sweep(detected, reference, [0.5])


def test_threshold_sweep_by_occupancy_counts_a_second_pick_of_a_particle_only_below_the_first():
    occupancy, reference = occupancy_case()
    detected = table([[5, 5, 5], [4, 4, 4], [5, 13, 13]], [1, 1, 2], score=[0.9, 0.4, 0.6])
    curves = threshold_sweep(detected, reference, [0.0, 0.5, 0.95], occupancy_map=occupancy)
    # At 0 the pick of 0.4 is a second one on particle 0: a false positive.
    np.testing.assert_allclose(curves.curve("precision"), [2 / 3, 1.0, np.nan])
    np.testing.assert_allclose(curves.curve("recall"), [1.0, 1.0, 0.0])
    np.testing.assert_allclose(curves.curve("recall", 2), [1.0, 1.0, 0.0])


def test_table_lists_class_names_and_overall():
    reference = table([[10, 10, 10]], [1])
    result = match_by_distance(table([[10, 10, 10]], [1]), reference, tolerance_voxels=1)
    text = format_table(precision_recall_f1(result, {1: "ribosome"}))
    lines = text.splitlines()
    assert lines[1].split() == ["ribosome", "1", "1", "1", "1.000", "1.000", "1.000"]
    assert lines[2].startswith("all")


def test_bad_input_raises_a_clear_error():
    occupancy, reference = occupancy_case()
    with pytest.raises(ValueError, match="share no tomogram id"):
        match_by_distance(table([[1, 1, 1]], [1], tomo="a"), table([[1, 1, 1]], [1], tomo="b"), 2)
    with pytest.raises(ValueError, match="tolerance_voxels must be > 0"):
        match_by_distance(reference, reference, tolerance_voxels=0)
    with pytest.raises(ValueError, match="particle id 2"):
        match_by_occupancy(reference, occupancy, reference.select([0]))
    with pytest.raises(ValueError, match="one tomogram"):
        match_by_occupancy(table([[1, 1, 1], [2, 2, 2]], [1, 1], tomo=["a", "b"]), occupancy, reference)


def test_command_line_clusters_a_label_map_and_scores_it(tmp_path, capsys):
    from deepfinder.core.cli import main
    from deepfinder.core.io import write_volume
    from deepfinder.core.targets import sphere_targets

    truth = table([[10, 12, 8], [30, 20, 12], [16, 30, 20]], [1, 2, 1], tomo="TS_01")
    write_volume(tmp_path / "tomo.mrc", sphere_targets((28, 40, 44), truth, {1: 3, 2: 5}).astype(np.int8))
    particle_csv.write(tmp_path / "truth.csv", truth)
    main(
        [
            "cluster",
            "--labels",
            str(tmp_path / "tomo.mrc"),
            "--radius",
            "1:3",
            "2:5",
            "--output",
            str(tmp_path / "found.xml"),
        ]
    )
    main(
        [
            "evaluate",
            "--detected",
            str(tmp_path / "found.xml"),
            "--reference",
            str(tmp_path / "truth.csv"),
            "--tolerance",
            "2",
            "--class-names",
            "1:small",
            "2:large",
            "--output",
            str(tmp_path / "scores.csv"),
            "--sweep",
            "3",
        ]
    )
    printed = capsys.readouterr().out
    assert "Wrote 3 particles" in printed and "small" in printed
    assert ["small", "0", "2", "0"] in [line.split() for line in printed.splitlines()]  # confusion
    assert (tmp_path / "scores.csv").read_text().splitlines()[-1].endswith("1.0000,1.0000,1.0000")

    each_own_id = table(truth.xyz, [1, 2, 3], tomo="TS_01")
    write_volume(
        tmp_path / "occupancy.mrc",
        sphere_targets((28, 40, 44), each_own_id, {1: 3, 2: 5, 3: 3}).astype(np.int16),
    )
    main(
        [
            "evaluate",
            "--detected",
            str(tmp_path / "found.xml"),
            "--reference",
            str(tmp_path / "truth.csv"),
            "--occupancy",
            str(tmp_path / "occupancy.mrc"),
            "--class-names",
            "1:small",
            "2:large",
        ]
    )
    rows = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["small", "0", "2", "0"] in rows  # both small ones on small particles
    assert ["large", "0", "0", "1"] in rows


def test_scores_and_sweep_csv_read_back_what_was_written(tmp_path):
    reference = table([[10, 10, 10], [30, 10, 10], [50, 10, 10]], [1, 1, 2])
    detected = table([[11, 10, 10], [30, 11, 10], [70, 10, 10]], [1, 1, 2], score=[0.9, 0.5, 0.7])
    names = {1: "ribosome", 2: "proteasome"}
    rows = precision_recall_f1(match_by_distance(detected, reference, 3), names)
    sweep = threshold_sweep(detected, reference, [0.5, 0.7, 0.9], tolerance_voxels=3, class_names=names)

    def same(read_rows, written_rows):
        for read, written in zip(read_rows, written_rows, strict=True):
            assert read.__dict__ == pytest.approx(written.__dict__, abs=1e-4, nan_ok=True)

    same(read_scores_csv(write_scores_csv(tmp_path / "scores.csv", rows)), rows)
    read = read_sweep_csv(write_sweep_csv(tmp_path / "sweep.csv", sweep))
    np.testing.assert_allclose(read.thresholds, [0.5, 0.7, 0.9])
    np.testing.assert_allclose(read.curve("recall", 1), [1.0, 0.5, 0.5])
    assert [r.n_reference for r in read.table[2]] == [2, 1, 3]
    for read_rows, written_rows in zip(read.table, sweep.table, strict=True):
        same(read_rows, written_rows)
