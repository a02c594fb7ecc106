"""Regions of interest: masks resampled to the tomogram, tiles outside skipped, picks outside dropped."""

import numpy as np
import pytest

from deepfinder.core.cluster import find_clusters
from deepfinder.core.errors import InputError
from deepfinder.core.io import read_volume, write_volume
from deepfinder.core.roi import fit_mask
from deepfinder.core.segment import predict_scores, segment_tomogram
from deepfinder.core.settings import SegmentationSettings

TILES = SegmentationSettings(patch_size=32, crop_voxels=4, batch_size=2, precision="float32")


def half_mask(shape):
    """The half of the volume with x < width / 2."""
    mask = np.zeros(shape, dtype=bool)
    mask[..., : shape[2] // 2] = True
    return mask


def test_a_mask_of_the_tomograms_shape_is_used_as_it_is():
    mask = np.zeros((6, 8, 10), dtype=np.float32)
    mask[2:4, 3:5, 1:9] = 0.5
    np.testing.assert_array_equal(fit_mask(mask, (6, 8, 10)), mask > 0)


def test_a_binned_mask_is_resampled_by_nearest_neighbour_to_the_tomograms_grid():
    binned = np.zeros((5, 8, 10), dtype=np.int8)
    binned[1:3, 2:6, 5:] = 1
    for voxel_sizes in [(20.0, 10.0), (None, None)]:
        fitted = fit_mask(binned, (10, 16, 19), *voxel_sizes)
        assert fitted.shape == (10, 16, 19) and fitted.dtype == bool
        expected = np.zeros((10, 16, 19), dtype=bool)
        expected[2:6, 4:12, 10:] = True
        np.testing.assert_array_equal(fitted, expected)


@pytest.mark.parametrize(
    "mask, shape, voxel_sizes, message",
    [
        (
            np.ones((10, 16, 20)),
            (10, 16, 40),
            (10.0, 10.0),
            r"lamella_mask.mrc of shape \(x, y, z\) \(20, 16, 10\)",
        ),
        (
            np.ones((5, 8, 10)),
            (10, 16, 20),
            (10.0, 10.0),
            r"cannot cover tomo.mrc of shape \(20, 16, 10\) at 10 A",
        ),
        (np.ones((5, 8, 12)), (10, 16, 20), (None, None), r"\(no voxel sizes\)"),
        (np.zeros((10, 16, 20)), (10, 16, 20), (None, None), "every voxel is 0"),
        (np.full((10, 16, 20), np.nan), (10, 16, 20), (None, None), "non-finite"),
        (np.ones((16, 20)), (10, 16, 20), (None, None), "3D"),
    ],
)
def test_a_mask_that_cannot_fit_the_tomogram_is_refused_naming_both(mask, shape, voxel_sizes, message):
    with pytest.raises(InputError, match=message) as refusal:
        fit_mask(mask, shape, *voxel_sizes, name="lamella_mask.mrc", tomogram_name="tomo.mrc")
    assert "lamella_mask.mrc" in str(refusal.value)


def test_outside_the_mask_every_voxel_is_background_and_inside_the_scores_do_not_change(model):
    volume = np.random.default_rng(0).normal(size=(20, 40, 72)).astype(np.float32)
    mask = half_mask(volume.shape)
    masked = predict_scores(volume, model, TILES, mask=mask)
    unmasked = predict_scores(volume, model, TILES)
    assert (unmasked[~mask].argmax(axis=-1) > 0).any(), "the random model must label something outside"
    np.testing.assert_array_equal(masked[~mask], np.tile([1.0, 0.0, 0.0], (np.count_nonzero(~mask), 1)))
    np.testing.assert_allclose(masked[mask], unmasked[mask], atol=1e-6)


def test_segment_tomogram_skips_the_tiles_outside_the_mask(weights, tmp_path):
    volume = np.random.default_rng(1).normal(size=(20, 40, 72)).astype(np.float32)
    write_volume(tmp_path / "tomo.mrc", volume, voxel_size=10)
    mask = half_mask(volume.shape)
    whole = segment_tomogram(tmp_path / "tomo.mrc", weights, tmp_path / "all.mrc", settings=TILES)
    masked = segment_tomogram(
        tmp_path / "tomo.mrc", weights, tmp_path / "masked.mrc", tmp_path / "s.mrc", TILES, mask=mask
    )
    assert whole["n_tiles_skipped"] == 0
    assert masked["n_tiles_skipped"] > 0 and masked["n_tiles"] < whole["n_tiles"]
    labels = read_volume(masked["labels"])
    assert not labels[~mask].any()
    np.testing.assert_array_equal(labels[mask], read_volume(whole["labels"])[mask])
    assert not read_volume(masked["scores"][1])[~mask].any()


def test_clustering_keeps_only_the_picks_whose_centre_lies_in_the_mask():
    labels = np.zeros((20, 30, 40), dtype=np.int8)
    labels[8:13, 8:13, 5:10] = 1  # centre x = 7: inside
    labels[8:13, 8:13, 17:22] = 1  # centre x = 19: the mask ends at x = 19 inclusive
    labels[8:13, 18:23, 28:33] = 2  # centre x = 30: outside
    mask = np.zeros(labels.shape, dtype=bool)
    mask[..., :20] = True
    every = find_clusters(labels, {1: 3, 2: 3}).particles
    kept = find_clusters(labels, {1: 3, 2: 3}, mask=mask).particles
    assert len(every) == 3
    np.testing.assert_allclose(kept.xyz[:, 0], [7, 19])
    assert list(kept.class_id) == [1, 1]


def blobs_label_map():
    """Two class-1 blobs at x = 7 and x = 30 in a (20, 30, 40) label map."""
    labels = np.zeros((20, 30, 40), dtype=np.int8)
    labels[8:13, 8:13, 5:10] = 1
    labels[8:13, 8:13, 28:33] = 1
    return labels


@pytest.mark.parametrize("header_voxel_size, option", [(20.0, []), (1.0, ["--mask-voxel-size", "20"])])
def test_command_line_cluster_keeps_the_picks_inside_a_binned_mask(
    header_voxel_size, option, tmp_path, capsys
):
    from deepfinder.core.cli import main
    from deepfinder.core.tables import read_table

    write_volume(tmp_path / "labels.mrc", blobs_label_map(), voxel_size=10)
    binned = np.zeros((10, 15, 20), dtype=np.int8)
    binned[..., :10] = 1  # x < 20 at 10 A/voxel
    write_volume(tmp_path / "mask.mrc", binned, voxel_size=header_voxel_size)
    common = ["cluster", "--quiet", "--labels", str(tmp_path / "labels.mrc"), "--radius", "3"]
    main([*common, "--output", str(tmp_path / "all.csv")])
    main([*common, "--output", str(tmp_path / "masked.csv"), "--mask", str(tmp_path / "mask.mrc"), *option])
    assert len(read_table(tmp_path / "all.csv").particles) == 2
    np.testing.assert_allclose(read_table(tmp_path / "masked.csv").particles.xyz[:, 0], [7])
    assert "Wrote 1 particles" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore:Data array contains NaN")  # writing the NaN mask
@pytest.mark.parametrize(
    "command, mask, problem",
    [
        ("cluster", np.ones((20, 30, 17), np.int8), "cannot cover"),
        ("cluster", np.zeros((20, 30, 40), np.int8), "every voxel is 0"),
        ("segment", np.full((20, 30, 40), np.nan, np.float32), "non-finite"),
        ("segment", np.ones((20, 30, 17), np.int8), "cannot cover"),
    ],
)
def test_command_line_refuses_a_bad_mask_in_one_line_naming_it(
    command, mask, problem, weights, tmp_path, capsys
):
    from deepfinder.core.cli import main

    write_volume(tmp_path / "labels.mrc", blobs_label_map(), voxel_size=10)
    write_volume(tmp_path / "tomo.mrc", np.random.default_rng(0).normal(size=(20, 30, 40)), voxel_size=10)
    write_volume(tmp_path / "bad_mask.mrc", mask, voxel_size=10)
    arguments = {
        "cluster": [
            "--labels",
            str(tmp_path / "labels.mrc"),
            "--radius",
            "3",
            "--output",
            str(tmp_path / "p.csv"),
        ],
        "segment": [
            "--tomogram",
            str(tmp_path / "tomo.mrc"),
            "--model",
            str(weights),
            "--labels",
            str(tmp_path / "l.mrc"),
        ],
    }[command]
    with pytest.raises(SystemExit) as exit_status:
        main([command, "--quiet", *arguments, "--mask", str(tmp_path / "bad_mask.mrc")])
    assert exit_status.value.code == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and str(tmp_path / "bad_mask.mrc") in error and problem in error
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "l.mrc").exists()


@pytest.fixture(scope="module")
def lamella(tmp_path_factory):
    """One tomogram of the lamella preset: a tilted slab under a layer of look-alikes and gold."""
    from deepfinder.core.simulate import simulate_dataset

    return simulate_dataset(tmp_path_factory.mktemp("lamella"), preset="lamella", n_tomograms=1)["tomograms"][
        0
    ]


def test_the_lamella_preset_writes_the_slab_as_its_mask_and_other_presets_none(lamella, tmp_path):
    from deepfinder.core.roi import positions_inside
    from deepfinder.core.simulate import simulate_dataset
    from deepfinder.core.tables import read_table

    mask = read_volume(lamella["mask"]) > 0
    assert 0.3 < mask.mean() < 0.7
    tilted = [np.flatnonzero(mask[:, 0, x]).mean() for x in (0, mask.shape[2] - 1)]
    assert abs(tilted[1] - tilted[0]) > 10, "the slab is tilted about y"
    particles = read_table(lamella["particles"]).particles
    assert len(particles) == 45 and positions_inside(mask, particles.xyz).all()
    assert "mask" not in simulate_dataset(tmp_path, preset="tiny", n_tomograms=1)["tomograms"][0]


def dark_spot_picker(tomogram: np.ndarray) -> np.ndarray:
    """Label map of a naive picker: class 1 where the smoothed tomogram is darkest (1%)."""
    from scipy import ndimage

    smoothed = ndimage.gaussian_filter(tomogram, 2.0)
    return (smoothed < np.quantile(smoothed, 0.01)).astype(np.int8)


@pytest.mark.slow
def test_without_the_mask_picks_fall_outside_the_slab_and_with_it_none(lamella, tmp_path, capsys):
    """Look-alikes and gold above the lamella draw picks; the slab mask removes them all."""
    from deepfinder.core.cli import main
    from deepfinder.core.roi import positions_inside
    from deepfinder.core.tables import read_table

    write_volume(tmp_path / "labels.mrc", dark_spot_picker(read_volume(lamella["tomogram"])), 12.0)
    common = [
        "cluster",
        "--quiet",
        "--labels",
        str(tmp_path / "labels.mrc"),
        "--radius",
        "4",
        "--min-size",
        "20",
    ]
    main([*common, "--output", str(tmp_path / "all.csv")])
    main([*common, "--output", str(tmp_path / "masked.csv"), "--mask", lamella["mask"]])
    slab = read_volume(lamella["mask"]) > 0
    every, masked = read_table(tmp_path / "all.csv").particles, read_table(tmp_path / "masked.csv").particles
    inside = positions_inside(slab, every.xyz)
    assert (~inside).sum() >= 3, "the layer above the slab draws picks"
    assert inside.sum() >= 3, "so do the particles in the slab"
    assert len(masked) == inside.sum() and positions_inside(slab, masked.xyz).all()


@pytest.mark.slow
def test_segmenting_the_lamella_with_its_mask_labels_nothing_outside_the_slab(lamella, weights, tmp_path):
    from deepfinder.core.cli import main

    common = ["segment", "--quiet", "--tomogram", lamella["tomogram"], "--model", str(weights)]
    common += ["--patch-size", "48", "--crop", "4"]
    main([*common, "--labels", str(tmp_path / "all.mrc")])
    main([*common, "--labels", str(tmp_path / "masked.mrc"), "--mask", lamella["mask"]])
    slab = read_volume(lamella["mask"]) > 0
    every, masked = read_volume(tmp_path / "all.mrc"), read_volume(tmp_path / "masked.mrc")
    assert every[~slab].any(), "the random model labels something outside the slab"
    assert not masked[~slab].any()
    np.testing.assert_array_equal(masked[slab], every[slab])
