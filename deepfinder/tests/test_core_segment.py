import logging
import re

import mrcfile
import numpy as np
import pytest
from scipy import ndimage

from deepfinder.core.errors import InputError
from deepfinder.core.io import read_volume, read_voxel_size, write_volume
from deepfinder.core.model import build_unet, save_model
from deepfinder.core.normalize import normalize, tomogram_stats
from deepfinder.core.segment import plan_axis, predict_scores, segment_tomogram
from deepfinder.core.settings import RECEPTIVE_FIELD_RADIUS, SegmentationSettings
from deepfinder.core.spectrum import PROFILE_KEY, amplitude_profile, match_amplitude_profile

N_CLASSES = 3


@pytest.fixture(scope="module")
def model():
    import keras

    keras.utils.set_random_seed(0)
    return build_unet(N_CLASSES)


@pytest.fixture(scope="module")
def weights(model, tmp_path_factory):
    return save_model(model, tmp_path_factory.mktemp("model") / "unet.weights.h5", {})


def tomogram(shape, seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def whole_volume_scores(volume, model):
    """One forward pass over the whole tomogram, its edges mirrored up to a multiple of 4."""
    mean, std = tomogram_stats(volume)
    pads = [(0, -size % 4) for size in volume.shape]
    padded = np.pad(normalize(volume, mean, std), pads, mode="symmetric")
    scores = np.asarray(model(padded[None, ..., None], training=False))[0]
    return scores[: volume.shape[0], : volume.shape[1], : volume.shape[2]]


@pytest.mark.parametrize(
    "size, patch, crop",
    [(928, 128, 4), (928, 128, 6), (99, 72, 32), (130, 128, 6), (61, 64, 6), (464, 60, 5)],
)
def test_kept_tile_centres_abut_on_even_voxels_and_leave_the_crop(size, patch, crop):
    plan = plan_axis(size, patch, crop)
    assert plan.length <= patch and plan.length % 4 == 0
    assert all(start % 4 == 0 for start in plan.starts)
    assert plan.keep[0][0] == 0 and plan.keep[-1][1] >= size
    assert all(end == begin for (_, end), (begin, _) in zip(plan.keep, plan.keep[1:]))
    assert all(begin % 2 == 0 and begin < end for begin, end in plan.keep)
    for i, (start, (begin, end)) in enumerate(zip(plan.starts, plan.keep)):
        assert begin >= (start + crop if i else 0)
        assert end <= (start + plan.length - crop if i < len(plan.starts) - 1 else start + plan.length)


@pytest.mark.slow
def test_tiled_prediction_equals_whole_volume_prediction(model):
    # Odd sizes, several tiles along y and x with overlapping centres, one along z.
    volume = tomogram((30, 78, 99))
    patch_size = 2 * RECEPTIVE_FIELD_RADIUS + 8
    tiled = predict_scores(
        volume,
        model,
        SegmentationSettings(patch_size=patch_size, crop_voxels=RECEPTIVE_FIELD_RADIUS, batch_size=3),
    )
    assert len(plan_axis(99, patch_size, RECEPTIVE_FIELD_RADIUS).starts) > 2
    whole = whole_volume_scores(volume, model)
    assert tiled.shape == volume.shape + (N_CLASSES,)
    np.testing.assert_allclose(tiled, whole, atol=2e-5)


@pytest.mark.slow
def test_rotation_average_equals_averaging_predictions_of_the_rotated_tomogram(model):
    volume = tomogram((32, 76, 100), seed=2)
    patch_size = 2 * RECEPTIVE_FIELD_RADIUS + 8
    averaged = predict_scores(
        volume,
        model,
        SegmentationSettings(
            patch_size=patch_size, crop_voxels=RECEPTIVE_FIELD_RADIUS, batch_size=2, average_rotations=True
        ),
    )
    rotations = [(1, 2), (0, 2), (0, 1)]  # 180 degrees about z, y, x: the missing wedge stays
    expected = whole_volume_scores(volume, model) + sum(
        np.flip(whole_volume_scores(np.flip(volume, axes), model), axes) for axes in rotations
    )
    np.testing.assert_allclose(averaged, expected / 4, atol=2e-5)
    assert not np.allclose(averaged, whole_volume_scores(volume, model), atol=1e-3)


def top_two_apart(scores):
    """Voxels whose best class score is strictly above the second best (no exact tie)."""
    ordered = np.sort(scores, axis=-1)
    return ordered[..., -1] > ordered[..., -2]


def test_segment_tomogram_writes_byte_labels_and_float16_scores_per_class(model, weights, tmp_path):
    volume = tomogram((22, 40, 37), seed=1)
    write_volume(tmp_path / "tomo.mrc", volume, voxel_size=13.5)
    result = segment_tomogram(
        tmp_path / "tomo.mrc",
        weights,
        tmp_path / "labels.mrc",
        tmp_path / "scores.mrc",
        SegmentationSettings(patch_size=32, crop_voxels=4, batch_size=2, precision="float32"),
    )
    expected = predict_scores(volume, model, SegmentationSettings(patch_size=32, crop_voxels=4))
    labels = read_volume(result["labels"])
    assert labels.itemsize == 1 and labels.shape == volume.shape
    assert read_voxel_size(result["labels"]) == pytest.approx(13.5)
    assert sorted(result["scores"]) == [1, 2]
    assert result["scores"][2].name == "scores_class2.mrc"
    for k, path in result["scores"].items():
        scores = read_volume(path)
        assert scores.dtype == np.float16
        np.testing.assert_allclose(scores, expected[..., k], atol=1e-3)
    clear = top_two_apart(expected)
    assert clear.mean() > 0.99
    np.testing.assert_array_equal(labels[clear], expected.argmax(axis=-1)[clear])


@pytest.mark.parametrize("average_rotations", [False, True])
def test_labels_taken_on_the_device_equal_the_argmax_of_the_scores(
    model, weights, tmp_path, average_rotations
):
    # Tiles of 24 with crop 5 overlap by 2 voxels along every axis: the seams are covered.
    volume = tomogram((30, 44, 41), seed=3)
    write_volume(tmp_path / "tomo.mrc", volume)
    settings = SegmentationSettings(
        patch_size=24, crop_voxels=5, batch_size=3, average_rotations=average_rotations, precision="float32"
    )
    labels = read_volume(
        segment_tomogram(tmp_path / "tomo.mrc", weights, tmp_path / "l.mrc", None, settings)["labels"]
    )
    scores = predict_scores(volume, model, settings)
    clear = top_two_apart(scores)
    assert clear.mean() > 0.99 and len(set(labels[clear].ravel())) == N_CLASSES
    np.testing.assert_array_equal(labels[clear], scores.argmax(axis=-1)[clear])


def test_map_headers_hold_the_statistics_of_their_data(weights, tmp_path):
    write_volume(tmp_path / "tomo.mrc", tomogram((21, 40, 36), seed=4))
    result = segment_tomogram(
        tmp_path / "tomo.mrc",
        weights,
        tmp_path / "labels.mrc",
        tmp_path / "scores.mrc",
        SegmentationSettings(patch_size=24, crop_voxels=4),
    )
    for path in [result["labels"], *result["scores"].values()]:
        with mrcfile.open(path) as mrc:
            data, header = mrc.data.astype(np.float64), mrc.header
            assert len(np.unique(data)) > 1
            np.testing.assert_allclose(
                [header.dmin, header.dmax, header.dmean, header.rms],
                [data.min(), data.max(), data.mean(), data.std()],
                rtol=1e-5,
                atol=1e-6,
            )


def test_each_run_logs_where_its_time_went(weights, tmp_path, caplog):
    write_volume(tmp_path / "tomo.mrc", tomogram((20, 24, 24)))
    with caplog.at_level(logging.INFO, logger="deepfinder.core.segment"):
        result = segment_tomogram(
            tmp_path / "tomo.mrc",
            weights,
            tmp_path / "labels.mrc",
            settings=SegmentationSettings(patch_size=24),
        )
    stages = (
        "network",
        "accumulation",
        "labels",
        "waiting_for_tiles",
        "waiting_for_writes",
        "reading",
        "writing",
    )
    assert set(result["stage_seconds"]) == set(stages)
    assert result["stage_seconds"]["network"] > 0 and result["stage_seconds"]["reading"] > 0
    last = caplog.records[-1].getMessage()
    assert re.fullmatch(
        r"segment: [0-9.]+ s in all: " + ", ".join(rf"{stage} [0-9.]+ s" for stage in stages), last
    )


def test_binned_scores_give_half_size_outputs(weights, tmp_path):
    write_volume(tmp_path / "tomo.mrc", tomogram((21, 40, 36)), voxel_size=10)
    result = segment_tomogram(
        tmp_path / "tomo.mrc",
        weights,
        tmp_path / "labels.mrc",
        tmp_path / "scores.mrc",
        SegmentationSettings(patch_size=24, crop_voxels=4, bin_scores=True),
    )
    assert read_volume(result["labels"]).shape == (11, 20, 18)
    assert read_volume(result["scores"][1]).shape == (11, 20, 18)
    assert read_voxel_size(result["labels"]) == pytest.approx(20)


@pytest.mark.parametrize(
    "volume, kwargs, message",
    [
        (tomogram((20, 24, 24)), {"patch_size": 30}, "patch_size: 30 is not a multiple of 4"),
        (tomogram((20, 24, 24)), {"patch_size": 48}, "larger than the tomogram"),
        (tomogram((20, 24, 24)), {"patch_size": 24, "crop_voxels": 12}, "leaves no centre"),
        (tomogram((20, 24, 24)), {"patch_size": 24, "batch_size": 0}, "batch_size: must be"),
        (np.full((20, 24, 24), 3.0, np.float32), {"patch_size": 24}, "constant"),
        (
            np.where(np.arange(20)[:, None, None] == 3, np.nan, tomogram((20, 24, 24))).astype(np.float32),
            {"patch_size": 24},
            "NaN",
        ),
    ],
)
def test_bad_input_is_refused_before_loading_the_model(volume, kwargs, message, tmp_path):
    write_volume(tmp_path / "tomo.mrc", volume)
    with pytest.raises(ValueError, match=message):
        segment_tomogram(
            tmp_path / "tomo.mrc",
            tmp_path / "absent.weights.h5",
            tmp_path / "labels.mrc",
            settings=SegmentationSettings(**kwargs),
        )


def test_model_with_another_class_count_is_refused(weights, tmp_path):
    write_volume(tmp_path / "tomo.mrc", tomogram((20, 24, 24)))
    with pytest.raises(ValueError, match=f"trained for {N_CLASSES} classes"):
        segment_tomogram(
            tmp_path / "tomo.mrc",
            weights,
            tmp_path / "labels.mrc",
            settings=SegmentationSettings(patch_size=24),
            n_classes=N_CLASSES + 1,
        )


def test_command_line_segments_a_tomogram(weights, tmp_path, capsys):
    from deepfinder.core.cli import main

    write_volume(tmp_path / "tomo.mrc", tomogram((20, 28, 24)))
    main(
        [
            "segment",
            "--tomogram",
            str(tmp_path / "tomo.mrc"),
            "--model",
            str(weights),
            "--labels",
            str(tmp_path / "labels.mrc"),
            "--scores",
            str(tmp_path / "s.mrc"),
            "--patch-size",
            "24",
            "--crop",
            "4",
            "--average-rotations",
        ]
    )
    assert read_volume(tmp_path / "labels.mrc").shape == (20, 28, 24)
    assert (tmp_path / "s_class2.mrc").exists()
    assert "Mvoxel/s" in capsys.readouterr().out


def test_positions_found_in_binned_scores_map_back_to_the_tomogram():
    from deepfinder.core.cluster import cluster_labels
    from deepfinder.core.particles import ParticleTable
    from deepfinder.core.segment import downsample_scores, unbin_positions
    from deepfinder.core.targets import sphere_targets

    truth = ParticleTable(tomo="t", class_id=[1, 1], xyz=[[13.0, 20.0, 9.0], [30.5, 11.0, 22.0]])
    ball = sphere_targets((32, 36, 40), truth, {1: 6}) == 1
    scores = np.stack([~ball, ball], axis=-1).astype(np.float32)
    binned = downsample_scores(scores)
    assert binned.shape == (16, 18, 20, 2)
    found = cluster_labels(binned.argmax(axis=-1).astype(np.uint8), {1: 3})
    np.testing.assert_allclose(
        np.sort(unbin_positions(found.xyz), axis=0), np.sort(truth.xyz, axis=0), atol=0.3
    )


@pytest.mark.parametrize("factor", [2, 3])
def test_a_binned_voxel_centre_is_the_centre_of_the_voxels_it_holds(factor):
    from deepfinder.core.segment import bin_positions, unbin_positions

    binned_voxels = np.array([[0.0, 0.0, 0.0], [4.0, 7.0, 1.0]])
    centres = [np.arange(factor).mean() + factor * voxel for voxel in binned_voxels]
    np.testing.assert_allclose(unbin_positions(binned_voxels, factor), centres)
    np.testing.assert_allclose(bin_positions(np.array(centres), factor), binned_voxels)


def test_spectrum_matching_segments_the_filtered_tomogram_and_needs_the_training_spectrum(model, tmp_path):
    volume = tomogram((32, 48, 56), seed=5)
    path = write_volume(tmp_path / "tomogram.mrc", volume)
    settings = SegmentationSettings(match_spectrum=True, precision="float32")
    bare = save_model(model, tmp_path / "bare.weights.h5", {})
    with pytest.raises(InputError, match="amplitude spectrum of its training tomograms.*without spectrum"):
        segment_tomogram(path, bare, tmp_path / "labels.mrc", settings=settings)
    assert not (tmp_path / "labels.mrc").exists()
    with pytest.raises(ValueError, match="no training spectrum"):
        predict_scores(volume, model, settings)

    # Trained on smoother tomograms than this one.
    profile = amplitude_profile(ndimage.gaussian_filter(tomogram((32, 48, 56), seed=6), 1.0))
    weights = save_model(model, tmp_path / "trained.weights.h5", {PROFILE_KEY: profile.tolist()})
    matched = segment_tomogram(path, weights, tmp_path / "labels.mrc", settings=settings)
    filtered = write_volume(tmp_path / "filtered.mrc", match_amplitude_profile(volume, profile))
    without = SegmentationSettings(precision="float32")
    plain = segment_tomogram(filtered, weights, tmp_path / "filtered_labels.mrc", settings=without)
    np.testing.assert_array_equal(read_volume(matched["labels"]), read_volume(plain["labels"]))
    unmatched = segment_tomogram(path, weights, tmp_path / "unmatched_labels.mrc", settings=without)
    assert np.mean(read_volume(unmatched["labels"]) != read_volume(matched["labels"])) > 0.01


def two_scale_models(model, tmp_path, coarse_voxel_size=20.0, coarse_names=("background", "ring", "rod")):
    """The module's model at 10 A/voxel and another network, said trained at ``coarse_voxel_size``."""
    import keras

    keras.utils.set_random_seed(1)
    names = ["background", "ring", "rod"]
    fine = save_model(model, tmp_path / "fine.weights.h5", {"class_names": names, "voxel_size": 10.0})
    coarse_model = build_unet(N_CLASSES)
    metadata = {"class_names": list(coarse_names), "voxel_size": coarse_voxel_size}
    return fine, save_model(coarse_model, tmp_path / "coarse.weights.h5", metadata), coarse_model


def test_coarse_model_scores_binned_tomogram_and_is_averaged_before_labelling(model, tmp_path):
    volume = tomogram((21, 40, 44), seed=7)
    path = write_volume(tmp_path / "tomogram.mrc", volume, voxel_size=10)
    fine, coarse, coarse_model = two_scale_models(model, tmp_path)
    settings = SegmentationSettings(patch_size=24, precision="float32")
    result = segment_tomogram(
        path, fine, tmp_path / "labels.mrc", tmp_path / "scores.mrc", settings, coarse_weights_path=coarse
    )

    even = np.pad(volume, [(0, size % 2) for size in volume.shape], mode="edge")
    binned = even.reshape(11, 2, 20, 2, 22, 2).mean(axis=(1, 3, 5))
    coarse_scores = predict_scores(binned, coarse_model, settings)
    upsampled = coarse_scores.repeat(2, 0).repeat(2, 1).repeat(2, 2)[:21]
    expected = (predict_scores(volume, model, settings) + upsampled) / 2
    labels = read_volume(result["labels"])
    assert labels.shape == volume.shape
    assert np.mean(labels == expected.argmax(axis=-1)) > 0.999
    np.testing.assert_allclose(read_volume(result["scores"][2]), expected[..., 2], atol=2e-3)
    plain = segment_tomogram(path, fine, tmp_path / "plain.mrc", settings=settings)
    assert np.mean(read_volume(plain["labels"]) != labels) > 0.01


@pytest.mark.parametrize(
    "coarse_voxel_size, coarse_names, message",
    [
        (
            10.0,
            ("background", "ring", "rod"),
            r"trained at 10 A/voxel.*twice its voxel size \(20 A/voxel: train it with binning 2",
        ),
        (20.0, ("background", "rod", "ring"), "classes.*same classes, in the same order"),
    ],
)
def test_coarse_model_of_other_classes_or_voxel_size_is_refused_before_any_output(
    model, tmp_path, coarse_voxel_size, coarse_names, message
):
    path = write_volume(tmp_path / "tomogram.mrc", tomogram((20, 24, 24)), voxel_size=10)
    fine, coarse, _ = two_scale_models(model, tmp_path, coarse_voxel_size, coarse_names)
    with pytest.raises(InputError, match=message):
        segment_tomogram(path, fine, tmp_path / "labels.mrc", coarse_weights_path=coarse)
    assert not (tmp_path / "labels.mrc").exists()


def test_coarse_model_leaves_background_outside_the_mask_and_bins_with_the_scores(model, tmp_path):
    path = write_volume(tmp_path / "tomogram.mrc", tomogram((20, 32, 36), seed=8), voxel_size=10)
    fine, coarse, _ = two_scale_models(model, tmp_path)
    mask = np.zeros((20, 32, 36), bool)
    mask[4:16, 8:24, 6:30] = True
    result = segment_tomogram(
        path,
        fine,
        tmp_path / "labels.mrc",
        tmp_path / "scores.mrc",
        SegmentationSettings(patch_size=24, precision="float32"),
        mask=mask,
        coarse_weights_path=coarse,
    )
    assert not read_volume(result["labels"])[~mask].any()
    assert not read_volume(result["scores"][1])[~mask].any()
    binned = segment_tomogram(
        path,
        fine,
        tmp_path / "binned.mrc",
        settings=SegmentationSettings(patch_size=24, precision="float32", bin_scores=True),
        coarse_weights_path=coarse,
    )
    assert read_volume(binned["labels"]).shape == (10, 16, 18)
