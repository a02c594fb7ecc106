import dataclasses
import json
import shutil

import numpy as np
import pytest
from scipy import ndimage

from deepfinder.core.checkpoints import last_checkpoint
from deepfinder.core.io import read_volume, write_volume
from deepfinder.core.losses import (
    cross_entropy_loss,
    dice_cross_entropy_loss,
    loss_of_sums,
    loss_sums,
    soft_dice_loss,
)
from deepfinder.core.model import build_unet, load_model, save_model
from deepfinder.core.normalize import normalize, tomogram_stats
from deepfinder.core.particles import ParticleTable
from deepfinder.core.segment import bin_volume, check_coarse_model
from deepfinder.core.settings import LOSSES, TrainingSettings
from deepfinder.core.spectrum import PROFILE_KEY, amplitude_profile
from deepfinder.core.tables import csv as particle_csv
from deepfinder.core.targets import bin_labels, sphere_targets
from deepfinder.core.train import train
from deepfinder.tests.look_alikes import blobs_and_look_alikes

SHAPE = (48, 48, 48)
# Small patches, and the paper's loss and step size (Dice, 1e-4).
FAST = TrainingSettings(patch_size=16, batch_size=4, shift_voxels=4, loss="dice")


def fast(**changes) -> TrainingSettings:
    return dataclasses.replace(FAST, **changes)


def blob_tomogram(folder, name, seed, radii=(4.0,), n_per_class=10):
    """Bright blobs of class 1 (and dark ones of class 2 if two radii) in noise."""
    rng = np.random.default_rng(seed)
    class_ids = np.repeat(np.arange(1, len(radii) + 1), n_per_class)
    table = ParticleTable(tomo=name, class_id=class_ids, xyz=rng.uniform(6, 42, (len(class_ids), 3)))
    labels = sphere_targets(SHAPE, table, dict(enumerate(radii, start=1)))
    density = np.select([labels == 1, labels == 2], [1.0, -1.0], 0.0)
    volume = ndimage.gaussian_filter(density, 1.0) + rng.normal(0, 0.3, SHAPE)
    tomogram = write_volume(folder / f"{name}.mrc", (10 * volume + 50).astype(np.float32))
    label_map = write_volume(folder / f"{name}_labels.mrc", labels)
    return tomogram, label_map, table


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    return {"train": blob_tomogram(folder, "train", 1), "val": blob_tomogram(folder, "val", 2)}


def args(data, **extra):
    tomogram, label_map, table = data["train"]
    v_tomogram, v_label_map, v_table = data["val"]
    return dict(
        tomograms=[tomogram],
        label_maps=[label_map],
        particles=[table],
        validation_tomograms=[v_tomogram],
        validation_label_maps=[v_label_map],
        validation_particles=[v_table],
        **extra,
    )


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """A short run with the paper's loss and step size (Dice, 1e-4) on the two-class blob
    problem, keeping a copy of every checkpoint."""
    out = tmp_path_factory.mktemp("trained")
    snapshots = tmp_path_factory.mktemp("snapshots")

    def keep_checkpoint(epoch, row):
        shutil.copy(last_checkpoint(out), snapshots / f"epoch{epoch}.weights.h5")

    best = train(
        **args(data),
        out_dir=out,
        n_classes=2,
        settings=fast(epochs=4, steps_per_epoch=15, validation_steps=2),
        class_names=["background", "blob"],
        voxel_size=10.0,
        on_epoch_end=keep_checkpoint,
    )
    return out, best, snapshots


def test_model_learns_blobs(trained, data):
    out, best, _ = trained
    history = json.loads((out / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
    assert max(row["val_f1"][1] for row in history) > 0.7
    # the saved model segments the whole held-out tomogram, normalised as in training
    model, metadata = load_model(best)
    tomogram, label_map, _ = data["val"]
    volume = read_volume(tomogram)
    x = normalize(volume, *tomogram_stats(volume))[None, ..., None]
    predicted = np.argmax(model.predict(x, verbose=0)[0], axis=-1)
    truth = read_volume(label_map)
    f1 = 2 * np.sum((predicted == 1) & (truth == 1)) / (np.sum(predicted == 1) + np.sum(truth == 1))
    assert f1 > 0.7


def test_best_model_is_best_by_validation_f1(trained):
    out, best, snapshots = trained
    history = json.loads((out / "history.json").read_text())
    metadata = json.loads((out / "best.json").read_text())
    best_epoch = int(np.argmax([row["val_mean_f1"] for row in history])) + 1
    assert metadata["best_epoch"] == best_epoch
    assert metadata["val_mean_f1"] == history[best_epoch - 1]["val_mean_f1"]
    best_weights = load_model(best)[0].get_weights()
    snapshot = load_model(snapshots / f"epoch{best_epoch}.weights.h5", n_classes=2)[0].get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(best_weights, snapshot))


def test_outputs_describe_the_model(trained, data):
    out, best, _ = trained
    assert best == out / "best.weights.h5"
    metadata = json.loads((out / "best.json").read_text())
    assert metadata["n_classes"] == 2 and metadata["patch_size"] == 16
    assert metadata["class_names"] == ["background", "blob"] and metadata["voxel_size"] == 10.0
    assert "per-tomogram" in metadata["normalisation"] and metadata["epochs_trained"] == 4
    # What segmenting with spectrum matching filters other tomograms to.
    np.testing.assert_allclose(metadata[PROFILE_KEY], amplitude_profile(read_volume(data["train"][0])))
    row = json.loads((out / "history.json").read_text())[0]
    for key in (
        "train_loss",
        "val_loss",
        "val_precision",
        "val_recall",
        "val_f1",
        "seconds",
        "data_wait_seconds",
        "step_seconds",
    ):
        assert key in row
    assert len(row["val_f1"]) == 2
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["epoch"] == 4 and state["best_epoch"] == metadata["best_epoch"]


def test_binned_training_makes_the_coarse_model_of_the_same_inputs(trained, data, tmp_path):
    coarse = train(
        **args(data),
        out_dir=tmp_path,
        n_classes=2,
        settings=fast(epochs=3, steps_per_epoch=15, validation_steps=2, binning=2),
        class_names=["background", "blob"],
        voxel_size=10.0,
    )
    check_coarse_model(trained[1], coarse)  # pairs with the full-size model at segmentation
    model, metadata = load_model(coarse)
    assert metadata["voxel_size"] == 20.0 and metadata["binning"] == 2
    tomogram, label_map, _ = data["val"]
    binned = bin_volume(read_volume(tomogram))
    predicted = np.argmax(
        model.predict(normalize(binned, *tomogram_stats(binned))[None, ..., None], verbose=0)[0], -1
    )
    truth = bin_labels(read_volume(label_map))
    assert predicted.shape == truth.shape == (24, 24, 24)
    f1 = 2 * np.sum((predicted == 1) & (truth == 1)) / (np.sum(predicted == 1) + np.sum(truth == 1))
    assert f1 > 0.6


@pytest.mark.slow
def test_resume_after_crash_continues_with_history(data, tmp_path):
    settings = dict(
        n_classes=2,
        settings=fast(
            epochs=3,
            steps_per_epoch=3,
            validation_steps=1,
            loss="cross_entropy",
            learning_rate=1e-3,
            final_learning_rate=1e-4,
            seed=5,
        ),
        validation_fraction=0.3,
    )
    tomogram, label_map, table = data["train"]
    inputs = dict(tomograms=[tomogram], label_maps=[label_map], particles=[table])

    def crash(epoch, row):
        if epoch == 2:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        train(**inputs, out_dir=tmp_path / "run", on_epoch_end=crash, **settings)
    before = json.loads((tmp_path / "run" / "history.json").read_text())
    assert [row["epoch"] for row in before] == [1, 2]
    assert json.loads((tmp_path / "run" / "checkpoint.json").read_text())["epoch"] == 2

    epochs_run = []
    train(**inputs, out_dir=tmp_path / "run", on_epoch_end=lambda e, r: epochs_run.append(e), **settings)
    assert epochs_run == [3]
    after = json.loads((tmp_path / "run" / "history.json").read_text())
    assert after[:2] == before and after[2]["epoch"] == 3
    np.testing.assert_allclose([row["learning_rate"] for row in after], [1e-3, 10**-3.5, 1e-4])

    # same batches and optimizer state as a run that never stopped
    train(**inputs, out_dir=tmp_path / "straight", **settings)
    straight = json.loads((tmp_path / "straight" / "history.json").read_text())
    np.testing.assert_allclose(
        [row["train_loss"] for row in after], [row["train_loss"] for row in straight], rtol=1e-3
    )


@pytest.mark.slow
def test_fine_tuning_starts_from_the_given_model(trained, data, tmp_path):
    _, best, _ = trained
    train(
        **args(data),
        out_dir=tmp_path,
        n_classes=2,
        settings=fast(epochs=1, steps_per_epoch=1, validation_steps=2),
        initial_weights=best,
    )
    history = json.loads((tmp_path / "history.json").read_text())
    assert history[0]["val_f1"][1] > 0.6
    assert json.loads((tmp_path / "best.json").read_text())["initial_weights"] == str(best)


def test_fine_tuning_with_other_class_count_is_refused(data, tmp_path):
    other = save_model(build_unet(3), tmp_path / "three.weights.h5", {})
    with pytest.raises(ValueError, match="has 3 classes but the training data has 2"):
        train(**args(data), out_dir=tmp_path / "out", n_classes=2, settings=FAST, initial_weights=other)
    assert not (tmp_path / "out" / "history.json").exists()


def test_resume_refuses_a_checkpoint_of_another_patch_size(trained, data):
    out, _, _ = trained
    with pytest.raises(ValueError, match=r"patch_size 24 \(the checkpoint's: 16\)"):
        train(**args(data), out_dir=out, n_classes=2, settings=fast(patch_size=24))


@pytest.mark.slow
def test_background_points_teach_that_a_look_alike_is_no_particle(tmp_path):
    tomogram, label_map, table, cubes, _ = blobs_and_look_alikes(tmp_path, "train", 1)
    held_out, held_out_labels, _, _, on_cubes = blobs_and_look_alikes(tmp_path, "test", 2)
    truth = read_volume(held_out_labels) == 1
    volume = read_volume(held_out)
    x = normalize(volume, *tomogram_stats(volume))[None, ..., None]
    found = {}
    for name, particles in (
        ("particles only", table),
        ("with background points", ParticleTable.concat([table, cubes])),
    ):
        best = train(
            [tomogram],
            [label_map],
            [particles],
            tmp_path / name,
            2,
            fast(epochs=6, steps_per_epoch=15, validation_steps=2),
            validation_fraction=0.2,
        )
        model, _ = load_model(best)
        found[name] = np.argmax(model.predict(x, verbose=0)[0], axis=-1) == 1
    # Never inside a patch, the cubes look like blobs to the first network...
    assert np.mean(found["particles only"][on_cubes]) > 0.5
    # ...and like background to the one that saw patches centred on them, which still finds the blobs.
    labelled = found["with background points"]
    assert np.mean(labelled[on_cubes]) < 0.1
    assert 2 * np.sum(labelled & truth) / (np.sum(labelled) + np.sum(truth)) > 0.5


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(settings=fast(patch_size=18)), "patch_size: 18 is not a multiple of 4"),
        (dict(settings=fast(patch_size=52)), "larger than tomogram"),
        (dict(n_classes=3), "Class\\(es\\) \\[2\\] have no training particles"),
        (dict(settings=fast(loss="focal")), "loss: unknown value 'focal'"),
        (dict(settings=fast(final_learning_rate=0.0)), "final_learning_rate: must be > 0"),
        (dict(validation_fraction=0.2), "either validation tomograms or validation_fraction"),
    ],
)
def test_bad_settings_fail_early(data, tmp_path, change, message):
    inputs = {"n_classes": 2, "settings": FAST, **change}
    with pytest.raises(ValueError, match=message):
        train(**args(data), out_dir=tmp_path, **inputs)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_bad_volumes_fail_early(data, tmp_path):
    tomogram, label_map, table = data["train"]
    small_labels = write_volume(tmp_path / "small.mrc", np.zeros((40, 48, 48), np.uint8))
    constant = write_volume(tmp_path / "constant.mrc", np.ones(SHAPE, np.float32))
    nan = np.zeros(SHAPE, np.float32)
    nan[3, 3, 3] = np.nan
    nan = write_volume(tmp_path / "nan.mrc", nan)
    too_many = write_volume(tmp_path / "labels3.mrc", np.full(SHAPE, 3, np.uint8))
    for volume, labels, message in [
        (tomogram, small_labels, "shape"),
        (constant, label_map, "constant"),
        (nan, label_map, "NaN"),
        (tomogram, too_many, "holds labels 3..3"),
    ]:
        with pytest.raises(ValueError, match=message):
            train([volume], [labels], [table], tmp_path / "out", 2, FAST)


def test_particles_outside_counted_then_empty_class_refused(data, tmp_path):
    tomogram, label_map, table = data["train"]
    outside = ParticleTable(tomo="train", class_id=[1, 2, 2], xyz=[table.xyz[0], [60, 5, 5], [5, -9, 5]])
    with pytest.warns(UserWarning, match="2 of 3 particles lie outside"):
        with pytest.raises(ValueError, match="Class\\(es\\) \\[2\\]"):
            train([tomogram], [label_map], [outside], tmp_path, 3, FAST)


def test_losses_are_zero_for_a_perfect_prediction_and_higher_otherwise():
    import tensorflow as tf

    labels = np.random.default_rng(0).integers(0, 3, (2, 8, 8, 8))
    truth = tf.one_hot(labels, 3)
    wrong = tf.one_hot((labels + 1) % 3, 3)

    def logits(probabilities):
        return tf.math.log(probabilities + 1e-12)

    for loss in (soft_dice_loss, cross_entropy_loss, dice_cross_entropy_loss):
        assert float(loss(truth, logits(truth))) < 1e-3
        assert float(loss(truth, logits(0.5 * truth + 0.5 * wrong))) > float(
            loss(truth, logits(0.9 * truth + 0.1 * wrong))
        )


def test_every_loss_of_a_batch_is_that_of_its_parts_sums_added():
    """Devices that each hold part of a batch add their parts' sums (multi_device)."""
    import tensorflow as tf

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 4, (4, 6, 6, 6))
    labels[2:] = np.minimum(labels[2:], 1)  # the second half lacks classes 2 and 3
    truth = tf.one_hot(labels, 4)
    logits = tf.constant(rng.normal(size=(4, 6, 6, 6, 4)), tf.float32)
    halves = [loss_sums(truth[part], logits[part]) for part in (slice(0, 2), slice(2, 4))]
    added = {name: halves[0][name] + halves[1][name] for name in halves[0]}
    for loss in LOSSES:
        whole = float(loss_of_sums(loss, loss_sums(truth, logits)))
        assert float(loss_of_sums(loss, added)) == pytest.approx(whole, rel=1e-5), loss


def test_cross_entropy_still_pulls_a_network_sure_of_the_wrong_class():
    import tensorflow as tf

    truth = tf.one_hot([[1, 0]], 2)
    logits = tf.Variable([[[0.0, -80.0], [0.0, -80.0]]])  # true class 1 at probability ~1e-35
    with tf.GradientTape() as tape:
        value = cross_entropy_loss(truth, logits)
    gradient = tape.gradient(value, logits).numpy()
    assert np.isfinite(float(value)) and float(value) > 10
    assert abs(gradient[0, 0, 1]) > 0.4  # full-strength gradient on the voxel labelled 1


def train_command(files: tuple, out, *extra: str) -> list[str]:
    """``deepfinder train`` of a few quick steps on ``files`` (tomogram, label map, particle file, ...)."""
    tomogram, label_map, particles = files[:3]
    return [
        "train",
        "--tomograms",
        str(tomogram),
        "--labels",
        str(label_map),
        "--particles",
        str(particles),
        "--classes",
        "2",
        "--out",
        str(out),
        "--val-fraction",
        "0.3",
        "--patch-size",
        "16",
        "--batch-size",
        "2",
        "--steps-per-epoch",
        "2",
        "--val-steps",
        "1",
        "--shift",
        "4",
        "--quiet",
        *extra,
    ]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Gimbal lock")  # identity rotations written as ZXZ angles
def test_command_line_trains_and_resumes(data, tmp_path, capsys):
    from deepfinder.core.cli import main

    tomogram, label_map, table = data["train"]
    files = (tomogram, label_map, particle_csv.write(tmp_path / "particles.csv", table))
    command = train_command(files, tmp_path / "model")
    main(command + ["--epochs", "1"])
    main(command + ["--epochs", "2"])
    history = json.loads((tmp_path / "model" / "history.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2]
    assert "best.weights.h5" in capsys.readouterr().out


@pytest.mark.slow
def test_without_validation_the_lowest_training_loss_is_kept(data, tmp_path):
    tomogram, label_map, table = data["train"]
    with pytest.warns(UserWarning, match="No validation data"):
        train(
            [tomogram],
            [label_map],
            [table],
            tmp_path,
            2,
            fast(epochs=3, steps_per_epoch=2, learning_rate=1e-3, loss="cross_entropy"),
        )
    history = json.loads((tmp_path / "history.json").read_text())
    metadata = json.loads((tmp_path / "best.json").read_text())
    assert "val_f1" not in history[0] and metadata["selected_by"] == "train_loss"
    assert metadata["best_epoch"] == int(np.argmin([row["train_loss"] for row in history])) + 1


@pytest.mark.parametrize(
    "change, message",
    [
        ({"batch_size": 1}, r"batch size \(1\) is smaller than the 2 particle classes"),
        ({"shift_voxels": 8}, r"shift \(8 voxels\) is at least half the patch size \(16\)"),
    ],
)
@pytest.mark.slow
def test_settings_that_train_badly_are_warned_about(tmp_path, change, message):
    tomogram, label_map, table = blob_tomogram(tmp_path, "two", 3, radii=(4.0, 3.0))
    with pytest.warns(UserWarning, match=message):
        train(
            [tomogram],
            [label_map],
            [table],
            tmp_path / "model",
            3,
            fast(epochs=1, steps_per_epoch=1, validation_steps=1, **change),
            validation_fraction=0.2,
        )
