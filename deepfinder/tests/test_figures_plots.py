"""The pictures (plots and the pages of result files), drawn headless from small synthetic histories,
tables and volumes."""

import json

import numpy as np
import pytest
from matplotlib.colors import same_color, to_rgba
from matplotlib.figure import Figure
from matplotlib.patches import Circle

from deepfinder.core import evaluate, io
from deepfinder.core.particles import ParticleTable
from deepfinder.core.tables import csv as particle_csv
from deepfinder.core.targets import sphere_targets
from deepfinder.figures.pictures import (
    cluster_sizes_path,
    clusters_page,
    evaluation_page,
    slices_page,
    training_page,
    write_png,
)
from deepfinder.figures.plots import (
    LABEL_ALPHA,
    class_colour,
    plot_cluster_histograms,
    plot_evaluation,
    plot_orthoslices,
    plot_training_history,
)

NAMES = ["background", "ribosome", "proteasome", "membrane"]


def _history(epochs: int) -> list[dict]:
    rows = []
    for epoch in range(1, epochs + 1):
        f1 = [0.99, 0.1 * epoch, 0.05 * epoch, None if epoch < 3 else 0.3]
        rows.append(
            {
                "epoch": epoch,
                "train_loss": 1 / epoch,
                "val_loss": 1.2 / epoch,
                "val_f1": f1,
                "val_mean_f1": float(np.nanmean([np.nan if v is None else v for v in f1[1:]])),
                "seconds": 1.0,
            }
        )
    return rows


def _legend_texts(axes) -> list[str]:
    return [text.get_text() for text in axes.get_legend().get_texts()]


def test_learning_curves_have_a_loss_per_set_and_an_f1_line_per_class():
    figure = Figure()
    plot_training_history(figure, _history(5), NAMES)
    loss, f1 = figure.axes
    assert (loss.get_xlabel(), f1.get_xlabel()) == ("epoch", "epoch")
    assert _legend_texts(loss) == ["training", "validation", "best epoch 5"]
    assert _legend_texts(f1) == ["ribosome", "proteasome", "membrane", "mean", "best epoch 5"]
    class_lines = f1.get_lines()[:3]
    assert [same_color(line.get_color(), class_colour(k)) for k, line in enumerate(class_lines, start=1)] == [
        True
    ] * 3
    np.testing.assert_allclose(class_lines[0].get_ydata(), [0.1, 0.2, 0.3, 0.4, 0.5])
    assert np.isnan(class_lines[2].get_ydata()[:2]).all()  # undefined F1 is not drawn as 0


def test_learning_curves_without_validation_pick_the_lowest_training_loss():
    history = [
        {"epoch": e, "train_loss": loss, "seconds": 1.0} for e, loss in enumerate([0.9, 0.4, 0.6], start=1)
    ]
    figure = Figure()
    plot_training_history(figure, history, NAMES[:2])
    loss, f1 = figure.axes
    assert _legend_texts(loss) == ["training", "best epoch 2"]
    assert [t.get_text() for t in f1.texts] == ["no validation data"]


def test_training_page_follows_a_growing_history(tmp_path):
    path = tmp_path / "history.json"
    figure = Figure()
    draw = training_page(path, NAMES)
    draw(figure)  # before the first epoch ends
    assert [t.get_text() for t in figure.axes[0].texts] == ["no epoch finished yet"]
    path.write_text(json.dumps(_history(2)))
    draw(figure)
    assert len(figure.axes[0].get_lines()[0].get_xdata()) == 2
    path.write_text(json.dumps(_history(4)))
    draw(figure)
    assert len(figure.axes[0].get_lines()[0].get_xdata()) == 4
    assert write_png(tmp_path / "curves.png", draw) == str(tmp_path / "curves.png")
    assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _tomogram(rng):
    particles = ParticleTable(tomo="t", class_id=[1, 2, 1], xyz=[[20, 30, 12], [44, 18, 12], [50, 40, 3]])
    labels = sphere_targets((24, 48, 64), particles, {1: 5, 2: 3})
    volume = rng.normal(size=labels.shape).astype(np.float32) - 2.0 * (labels > 0)
    return volume, labels, particles


def test_orthoslices_show_labels_and_particles_cut_by_the_slices():
    volume, labels, particles = _tomogram(np.random.default_rng(0))
    figure = Figure()
    centre = plot_orthoslices(
        figure,
        volume,
        NAMES,
        labels=labels,
        particles=particles,
        radius_voxels={1: 5, 2: 3},
        centre_xyz=(20, 30, 12),
    )
    assert centre == (20, 30, 12)
    xy, yz, xz, legend = figure.axes
    assert [xy.get_title(), yz.get_title(), xz.get_title()] == ["XY, z = 12", "YZ, x = 20", "XZ, y = 30"]
    assert (xy.get_xlabel(), xy.get_ylabel()) == ("x (voxels)", "y (voxels)")
    assert (xz.get_xlabel(), xz.get_ylabel()) == ("x (voxels)", "z (voxels)")
    assert (yz.get_xlabel(), yz.get_ylabel()) == ("z (voxels)", "y (voxels)")
    # XY at z = 12 cuts particles 1 and 2 through their centres; particle 3 (z = 3) is 9 away.
    circles = [p for p in xy.patches if isinstance(p, Circle)]
    assert sorted((c.center, c.radius) for c in circles) == [((20, 30), 5.0), ((44, 18), 3.0)]
    assert same_color(circles[0].get_edgecolor(), class_colour(1)) or same_color(
        circles[0].get_edgecolor(), class_colour(2)
    )
    # The label overlay: class 1 colour at the first particle's centre, transparent background.
    overlay = xy.get_images()[1].get_array()
    np.testing.assert_allclose(overlay[30, 20], to_rgba(class_colour(1), LABEL_ALPHA))
    assert overlay[0, 0, 3] == 0
    assert _legend_texts(legend) == ["ribosome", "proteasome"]


def test_orthoslices_of_a_binned_label_map_and_unsized_particles():
    volume, labels, particles = _tomogram(np.random.default_rng(1))
    figure = Figure()
    centre = plot_orthoslices(
        figure, volume, NAMES, labels=labels[::2, ::2, ::2], particles=particles, label_binning=2
    )
    np.testing.assert_array_equal(centre, np.round(np.median(particles.xyz, axis=0)))
    xy = figure.axes[0]
    assert xy.get_images()[1].get_extent() == [-0.5, 63.5, -0.5, 47.5]
    crosses = xy.get_lines()
    assert sum(len(line.get_xdata()) for line in crosses) == 2  # the two particles at z = 12
    with pytest.raises(ValueError, match="do not cover the tomogram"):
        plot_orthoslices(figure, volume, NAMES, labels=labels[:, :20])


def test_cluster_histograms_one_step_histogram_per_class_and_quantity():
    rng = np.random.default_rng(2)
    class_id = np.repeat([1, 2], [30, 10])
    figure = Figure()
    plot_cluster_histograms(
        figure, class_id, NAMES, sizes_voxels=rng.integers(50, 2000, 40), scores=rng.uniform(0, 1, 40)
    )
    size_axes, score_axes = figure.axes
    assert size_axes.get_xscale() == "log"
    assert (size_axes.get_xlabel(), score_axes.get_xlabel()) == (
        "size (voxels)",
        "score (mean class probability)",
    )
    for axes in (size_axes, score_axes):
        assert _legend_texts(axes) == ["ribosome (30)", "proteasome (10)"]
        assert len(axes.patches) == 2
        assert same_color(axes.patches[1].get_edgecolor(), class_colour(2))
    figure = Figure()
    plot_cluster_histograms(figure, class_id, NAMES, sizes_voxels=np.full(40, 100))
    assert len(figure.axes) == 1
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_cluster_histograms(figure, class_id, NAMES)


def test_clusters_page_reads_particles_and_sizes_of_several_tomograms(tmp_path):
    paths = []
    for tomo, n in (("a", 3), ("b", 0)):
        table = ParticleTable(tomo=tomo, class_id=[1] * n, xyz=np.zeros((n, 3)), score=[0.5] * n)
        paths.append(particle_csv.write(tmp_path / f"{tomo}_particles.csv", table))
        np.savetxt(cluster_sizes_path(paths[-1]), np.full(n, 80), fmt="%d")  # as 'deepfinder cluster --sizes'
    figure = Figure()
    clusters_page(paths, NAMES, score_is_probability=True)(figure)
    assert [axes.get_title() for axes in figure.axes] == ["Cluster size", "Particle score"]
    assert _legend_texts(figure.axes[0]) == ["ribosome (3)"]


def test_evaluation_table_and_one_curve_per_class_and_overall(tmp_path):
    reference = ParticleTable(tomo="t", class_id=[1, 1, 2], xyz=[[10, 10, 10], [30, 10, 10], [50, 10, 10]])
    picked = ParticleTable(
        tomo="t",
        class_id=[1, 1, 2, 2],
        xyz=[[11, 10, 10], [30, 12, 10], [50, 10, 11], [70, 10, 10]],
        score=[0.9, 0.4, 0.8, 0.3],
    )
    names = dict(enumerate(NAMES))
    rows = evaluate.precision_recall_f1(evaluate.match_by_distance(picked, reference, 3), names)
    sweep = evaluate.threshold_sweep(
        picked, reference, np.unique(picked.score), tolerance_voxels=3, class_names=names
    )
    figure = Figure()
    plot_evaluation(figure, rows, sweep)
    table_axes, *metric_axes = figure.axes
    cells = table_axes.tables[0].get_celld()
    assert [cells[i, 0].get_text().get_text() for i in range(4)] == ["class", "ribosome", "proteasome", "all"]
    assert cells[3, 6].get_text().get_text() == "0.857"  # overall F1 = 2 * 3 / (4 + 3)
    assert [axes.get_ylabel() for axes in metric_axes] == ["precision", "recall", "F1"]
    for axes in metric_axes:
        assert len(axes.get_lines()) == 3  # two classes and all
        assert axes.get_xlabel().startswith("score threshold")
    np.testing.assert_allclose(metric_axes[1].get_lines()[0].get_ydata(), [1.0, 1.0, 0.5, 0.5])
    assert _legend_texts(metric_axes[2]) == ["ribosome", "proteasome", "all"]
    # The same picture from the files the evaluate protocol writes.
    evaluate.write_scores_csv(tmp_path / "evaluation.csv", rows)
    evaluate.write_sweep_csv(tmp_path / "threshold_sweep.csv", sweep)
    written = write_png(
        tmp_path / "evaluation.png",
        evaluation_page(tmp_path / "evaluation.csv", tmp_path / "threshold_sweep.csv"),
    )
    assert (tmp_path / "evaluation.png").stat().st_size > 10_000, written


def test_slices_page_writes_a_png_from_mrc_files(tmp_path):
    volume, labels, particles = _tomogram(np.random.default_rng(3))
    io.write_volume(tmp_path / "t.mrc", volume)
    io.write_volume(tmp_path / "t_labels.mrc", labels)
    path = write_png(
        tmp_path / "t_labels.png",
        slices_page(tmp_path / "t.mrc", NAMES, tmp_path / "t_labels.mrc", particles, {1: 5, 2: 3}, title="t"),
    )
    assert (tmp_path / "t_labels.png").read_bytes()[:4] == b"\x89PNG", path
