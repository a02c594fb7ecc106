"""One home per setting: the Scipion forms and the command line get the engine's defaults and
help texts, and a bad value is refused naming the setting, by the engine and by the command line."""

import dataclasses
import math
import subprocess
import sys

import numpy as np
import pytest

from deepfinder.core import cli
from deepfinder.core.cluster import find_clusters
from deepfinder.core.commands import segment as segment_command
from deepfinder.core.commands import targets as targets_command
from deepfinder.core.commands import train as train_command
from deepfinder.core.errors import InputError
from deepfinder.core.io import write_volume
from deepfinder.core.segment import segment_tomogram
from deepfinder.core.settings import (
    TRAINING_PRESETS,
    ClusterSettings,
    SegmentationSettings,
    SettingError,
    TargetSettings,
    TrainingSettings,
    help_of,
    per_class,
    read_settings,
    split_values,
    training_preset,
    write_settings,
)
from deepfinder.core.train import train
from deepfinder.protocols import (
    DeepFinderProtGenerateTargets,
    DeepFinderProtSegment,
    DeepFinderProtTrain,
    protocol_segment,
    protocol_targets,
    protocol_train,
)

# Settings without a form field: the precision is the Scipion variable DEEPFINDER_PRECISION, the
# segmentation crop keeps the engine's default.
NOT_IN_FORMS = {"precision", "crop_voxels"}


@pytest.mark.parametrize(
    "protocol_class, settings_class, form_params",
    [
        (DeepFinderProtTrain, TrainingSettings, protocol_train.FORM_PARAMS),
        (DeepFinderProtSegment, SegmentationSettings, protocol_segment.FORM_PARAMS),
        (DeepFinderProtGenerateTargets, TargetSettings, protocol_targets.FORM_PARAMS),
    ],
)
def test_forms_default_to_the_engine_settings_and_show_their_help(
    protocol_class, settings_class, form_params
):
    protocol = protocol_class()
    fields = {f.name for f in dataclasses.fields(settings_class)}
    assert fields - NOT_IN_FORMS <= set(form_params), "a setting has no form field"
    from_form = protocol._settings()
    for setting, param in form_params.items():
        engine = getattr(settings_class(), setting)
        assert getattr(from_form, setting) == engine, f"{protocol_class.__name__}.{param}"
        assert protocol.getParam(param).getHelp() == help_of(settings_class, setting), param


def test_command_line_defaults_are_the_engine_settings():
    parser = cli.build_parser()
    train_args = parser.parse_args(
        ["train", "--tomograms", "t", "--labels", "l", "--particles", "p", "--classes", "2", "--out", "o"]
    )
    assert train_command.training_settings(train_args) == TrainingSettings()
    segment_args = parser.parse_args(["segment", "--tomogram", "t", "--model", "m", "--labels", "l"])
    assert segment_command.segmentation_settings(segment_args) == SegmentationSettings()
    targets_args = parser.parse_args(
        ["targets", "--tomogram", "t", "--particles", "p", "--radius", "5", "--out", "o"]
    )
    assert targets_command.target_settings(targets_args) == TargetSettings()


def test_a_preset_is_overridden_by_the_options_given():
    parser = cli.build_parser()
    required = [
        "train",
        "--tomograms",
        "t",
        "--labels",
        "l",
        "--particles",
        "p",
        "--classes",
        "2",
        "--out",
        "o",
    ]
    args = parser.parse_args(required + ["--preset", "gpu", "--batch-size", "6", "--no-bootstrap"])
    settings = train_command.training_settings(args)
    assert settings.patch_size == TRAINING_PRESETS["gpu"]["patch_size"] == 56
    assert settings.batch_size == 6 and settings.bootstrap is False
    assert settings == training_preset("gpu", batch_size=6, bootstrap=False)


def test_default_settings_pass_their_checks_without_warnings():
    for settings in (TrainingSettings(), SegmentationSettings(), ClusterSettings(), TargetSettings()):
        settings.check()
    for name in TRAINING_PRESETS:
        training_preset(name).check()
        assert training_preset(name).warnings(n_particle_classes=4) == []


@pytest.mark.parametrize(
    "settings, name, fix",
    [
        (TrainingSettings(patch_size=30), "patch_size", "use 28 or 32"),
        (TrainingSettings(batch_size=0), "batch_size", ">= 1"),
        (TrainingSettings(loss="focal"), "loss", "dice_cross_entropy"),
        (TrainingSettings(learning_rate=0), "learning_rate", "> 0"),
        (TrainingSettings(shift_voxels=-1), "shift_voxels", ">= 0"),
        (TrainingSettings(precision="half"), "precision", "bfloat16"),
        (SegmentationSettings(patch_size=50), "patch_size", "or 0 for automatic"),
        (SegmentationSettings(patch_size=16, crop_voxels=8), "patch_size", "smaller crop"),
        (SegmentationSettings(batch_size=0), "batch_size", ">= 1"),
        (ClusterSettings(split_factor=0), "split_factor", "> 0"),
        (ClusterSettings(min_size_fraction=-0.1), "min_size_fraction", ">= 0"),
        (TargetSettings(mask_threshold=math.nan), "mask_threshold", "finite"),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting_and_the_fix(settings, name, fix):
    with pytest.raises(SettingError, match=name) as raised:
        settings.check()
    assert raised.value.setting == name and fix in str(raised.value)


def test_training_warns_about_settings_that_train_badly():
    messages = TrainingSettings(batch_size=2, patch_size=16).warnings(n_particle_classes=3)
    assert len(messages) == 2
    assert "batch of at least 3" in messages[0] and "shift below 8" in messages[1]
    assert TrainingSettings(batch_size=2, bootstrap=False).warnings(n_particle_classes=3) == []


def test_the_engine_refuses_bad_settings_before_reading_any_file(tmp_path):
    absent = tmp_path / "absent.mrc"
    with pytest.raises(SettingError, match="batch_size"):
        train([absent], [absent], [None], tmp_path / "out", 2, TrainingSettings(batch_size=0))
    write_volume(tmp_path / "tomo.mrc", np.random.default_rng(0).normal(size=(8, 16, 16)).astype(np.float32))
    with pytest.raises(SettingError, match="crop_voxels"):
        segment_tomogram(
            tmp_path / "tomo.mrc", absent, tmp_path / "labels.mrc", None, SegmentationSettings(crop_voxels=-1)
        )
    with pytest.raises(SettingError, match="split_factor"):
        find_clusters(np.zeros((8, 8, 8), np.uint8), {1: 2.0}, settings=ClusterSettings(split_factor=0))


def test_values_per_class_are_one_for_all_one_per_class_or_pairs():
    assert per_class(["6"], [1, 2], "radius") == {1: 6.0, 2: 6.0}
    assert per_class(split_values("120, 60"), [1, 2], "radii") == {1: 120.0, 2: 60.0}
    assert per_class(split_values("120; 60"), [1, 2], "radii") == {1: 120.0, 2: 60.0}
    assert per_class(["1:6", "3:9"], [1, 3], "--radius", int) == {1: 6, 3: 9}
    assert per_class(["2:b.mrc"], [], "--mask", str) == {2: "b.mrc"}
    for values, classes, message in [
        (["6", "7", "8"], [1, 2], "one per class"),
        (["x:6"], [1], "CLASS:VALUE"),
        (["six"], [1], "cannot read"),
        ([], [1, 2], "one per class"),
        (["ribosome"], [], "one per class"),
    ]:
        with pytest.raises(SettingError, match=message):
            per_class(values, classes, "radius")


def deepfinder(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "deepfinder.core.cli", *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    "command, option",
    [
        (["train", "--classes", "2", "--out", "o", "--patch-size", "30"], "--patch-size"),
        (["train", "--classes", "2", "--out", "o", "--val-steps", "0"], "--val-steps"),
        (["segment", "--tomogram", "t", "--model", "m", "--labels", "l", "--crop", "-2"], "--crop"),
        (["targets", "--tomogram", "t", "--particles", "p", "--mask", "1:m", "--out", "o",
          "--mask-threshold", "inf"], "--mask-threshold"),
    ],
)  # fmt: skip
def test_the_command_line_refuses_a_bad_value_naming_the_option(command, option):
    if command[0] == "train":
        command += ["--tomograms", "t", "--labels", "l", "--particles", "p"]
    result = deepfinder(*command)
    assert result.returncode != 0
    assert f"error: {option}:" in result.stderr, result.stderr


def test_the_command_line_names_a_bad_per_class_value(tmp_path):
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[2:5, 2:5, 2:5] = 1
    write_volume(tmp_path / "labels.mrc", labels)
    result = deepfinder(
        "cluster", "--labels", str(tmp_path / "labels.mrc"), "--radius", "big", "--output", "o.csv"
    )
    assert result.returncode != 0 and "error: --radius:" in result.stderr, result.stderr


@pytest.fixture(scope="module")
def small_model(tmp_path_factory):
    from deepfinder.core.model import build_unet, save_model

    return save_model(build_unet(2), tmp_path_factory.mktemp("model") / "unet.weights.h5", {})


@pytest.mark.parametrize("verbosity, shows_progress", [([], True), (["--quiet"], False)])
def test_the_command_line_prints_the_engines_progress_unless_quiet(
    small_model, tmp_path, capsys, verbosity, shows_progress
):
    write_volume(tmp_path / "tomo.mrc", np.random.default_rng(0).normal(size=(24, 40, 40)).astype(np.float32))
    command = ["segment", "--tomogram", str(tmp_path / "tomo.mrc"), "--model", str(small_model)]
    cli.main(command + ["--labels", str(tmp_path / "labels.mrc"), "--patch-size", "24", *verbosity])
    out = capsys.readouterr().out
    assert ("segment: 4/4 tiles of (24, 24, 24) (1/1 rows) done" in out) == shows_progress
    assert "Wrote" in out  # the result, even when quiet
    assert ("deepfinder segment: started" in out and "CUDA_VISIBLE_DEVICES=" in out) == shows_progress
    assert not any(line.startswith(("INFO", "DEBUG", "deepfinder.")) for line in out.splitlines())


def test_a_settings_file_reads_back_what_was_written_and_refuses_unknown_settings(tmp_path):
    settings = TrainingSettings(patch_size=32, loss="dice", bootstrap=False)
    write_settings(tmp_path / "train.json", settings)
    assert read_settings(tmp_path / "train.json", TrainingSettings) == settings
    cluster = ClusterSettings(radius=("1:6", "2:4.5"), threshold=("auto",), box_scale=3.0)
    write_settings(tmp_path / "cluster.json", cluster)
    assert read_settings(tmp_path / "cluster.json", ClusterSettings) == cluster
    (tmp_path / "extra.json").write_text('{"kind": "ClusterSettings", "settings": {"diameter": 3}}')
    with pytest.raises(InputError, match=r"extra.json: ClusterSettings has no setting diameter"):
        read_settings(tmp_path / "extra.json", ClusterSettings)
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(InputError, match="broken.json: cannot read the settings"):
        read_settings(tmp_path / "broken.json", ClusterSettings)
