"""Files that are not particle tables, through ``deepfinder.core.cli.main`` in this process: the
``--error-file``, label maps and models given to train, simulate's templates and values, MRC
headers with a zero machine stamp; and the parser itself (``--version``, a help text per option).

Each case checks what the user sees (exit code, the error line naming the file and the fix) and
what is left on disk (inputs byte-identical, no output folder).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest

from deepfinder.core import cli
from deepfinder.core.io import write_volume
from deepfinder.version import __version__

VOXEL_SIZE = 10.0
SHAPE = (16, 16, 16)


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """A tomogram, its label map (classes 1 and 2) and particle table, in the current folder."""
    monkeypatch.chdir(tmp_path)
    write_volume("tomo.mrc", np.random.default_rng(0).normal(size=SHAPE).astype(np.float32), VOXEL_SIZE)
    labels = np.zeros(SHAPE, np.int8)
    labels[7:10, 7:10, 7:10] = 1
    labels[3:6, 3:6, 3:6] = 2
    write_volume("labels.mrc", labels, VOXEL_SIZE)
    Path("particles.csv").write_text("tomo,class_id,x,y,z\ntomo,1,8,8,8\ntomo,2,4,4,4\n")
    return tmp_path


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def run(folder, cli_in_process):
    """``run(argv)``: the exit code and standard error of ``deepfinder <argv> --quiet`` in ``folder``."""

    def run_quiet(argv: list[str]) -> tuple[int, str]:
        result = cli_in_process(folder, [*argv, "--quiet"])
        return result.returncode, result.stderr

    return run_quiet


def train(labels: str = "labels.mrc", *extra: str) -> list[str]:
    return ["train", "--tomograms", "tomo.mrc", "--labels", labels, "--particles", "particles.csv"] + [
        "--classes",
        "3",
        "--out",
        "run",
        "--patch-size",
        "8",
        "--shift",
        "2",
        *extra,
    ]


def targets(particles: str = "particles.csv", *extra: str) -> list[str]:
    return [
        "targets",
        "--tomogram",
        "tomo.mrc",
        "--particles",
        particles,
        "--radius",
        "1",
        "--out",
        "l.mrc",
    ] + [*extra]


# --------------------------------------------------------------------------- --error-file


def test_an_error_file_naming_an_input_is_refused_and_the_input_kept(run, folder):
    before = checksums(folder)
    code, stderr = run(targets("absent.csv", "--error-file", "tomo.mrc"))
    assert code == 2
    assert stderr == (
        "deepfinder targets: error: --error-file: output tomo.mrc would overwrite the input tomo.mrc: "
        "choose another output path\n"
    )
    assert checksums(folder) == before


def test_an_error_file_naming_a_per_class_input_is_refused(run, folder):
    before = checksums(folder)
    argv = ["targets", "--tomogram", "tomo.mrc", "--particles", "particles.csv", "--out", "l.mrc"]
    code, stderr = run([*argv, "--mask", "1:labels.mrc", "2:labels.mrc", "--error-file", "labels.mrc"])
    assert code == 2
    assert "--error-file: output labels.mrc would overwrite the input labels.mrc" in stderr
    assert checksums(folder) == before


def test_an_error_file_in_a_missing_folder_is_written_there(run):
    code, stderr = run(targets("absent.csv", "--error-file", "logs/new/error.txt"))
    assert code == 2
    assert stderr == "deepfinder targets: error: absent.csv: No such file or directory\n"
    assert Path("logs/new/error.txt").read_text() == stderr
    assert [path.name for path in Path("logs/new").iterdir()] == ["error.txt"]  # no temporary left


def test_an_error_file_that_cannot_be_written_leaves_the_command_error(run):
    code, stderr = run(targets("absent.csv", "--error-file", "particles.csv/error.txt"))
    assert code == 2
    assert stderr.splitlines() == [
        "deepfinder targets: error: absent.csv: No such file or directory",
        "deepfinder targets: warning: the error file was not written: particles.csv: File exists",
    ]


def test_an_error_file_that_is_a_folder_is_refused(run, folder):
    Path("logs").mkdir()
    code, stderr = run(targets("absent.csv", "--error-file", "logs"))
    assert (code, stderr) == (
        2,
        "deepfinder targets: error: --error-file logs is a folder: give the path of a file\n",
    )


# --------------------------------------------------------------------------- train's label maps and model


def test_train_refuses_a_score_map_given_as_labels(run, folder):
    write_volume("scores.mrc", np.random.default_rng(1).uniform(size=SHAPE).astype(np.float32), VOXEL_SIZE)
    before = checksums(folder)
    code, stderr = run(train("scores.mrc"))
    assert (code, stderr) == (
        2,
        "deepfinder train: error: scores.mrc: the label map must hold integer class labels, got float32: "
        "give a label map (from segment or targets), not a tomogram or a score map\n",
    )
    assert checksums(folder) == before
    assert not Path("run").exists()


def test_train_refuses_a_label_map_without_the_class_where_its_particles_are(run, folder):
    other = np.zeros(SHAPE, np.int8)
    other[0:3, 12:16, 12:16] = 1  # class 1 far from its particle at (8, 8, 8)
    other[3:6, 3:6, 3:6] = 2
    write_volume("other.mrc", other, VOXEL_SIZE)
    before = checksums(folder)
    code, stderr = run(train("other.mrc", "--patch-size", "4"))
    assert (code, stderr) == (
        2,
        "deepfinder train: error: Label map other.mrc holds no voxel of class 1 in the 4-voxel patches "
        "centred on the 1 particle(s) of that class: give the label map painted from these particles "
        "(deepfinder targets), with the positions at the tomogram's voxel size\n",
    )
    assert checksums(folder) == before
    assert not Path("run").exists()


def test_train_refuses_a_corrupt_initial_model_before_tensorflow_and_leaves_no_folder(run, folder):
    Path("model.weights.h5").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, np.uint8).tobytes())
    before = checksums(folder)
    code, stderr = run(train("labels.mrc", "--initial-weights", "model.weights.h5"))
    assert code == 2
    # One line: the refusal, without the notice of a run without validation data before it.
    assert stderr.startswith(
        "deepfinder train: error: model.weights.h5 is not a readable model file (HDF5 weights): "
    ), stderr
    assert len(stderr.splitlines()) == 1
    assert checksums(folder) == before
    assert not Path("run").exists()


def test_train_refuses_a_truncated_initial_model(run):
    import h5py

    with h5py.File("whole.weights.h5", "w") as weights:
        weights["layer/kernel"] = np.ones((64, 64, 16), np.float32)
    data = Path("whole.weights.h5").read_bytes()
    Path("cut.weights.h5").write_bytes(data[: len(data) // 2])
    code, stderr = run(train("labels.mrc", "--initial-weights", "cut.weights.h5"))
    assert code == 2
    assert stderr.startswith(
        "deepfinder train: error: cut.weights.h5 is not a readable model file (HDF5 weights): "
    )
    assert not Path("run").exists()


def test_train_refuses_an_initial_model_of_nan_weights(run):
    import h5py

    with h5py.File("nan.weights.h5", "w") as weights:
        weights["layer/kernel"] = np.full((3, 3), np.nan, np.float32)
    code, stderr = run(train("labels.mrc", "--initial-weights", "nan.weights.h5"))
    assert (code, stderr) == (
        2,
        "deepfinder train: error: nan.weights.h5 holds NaN or infinite weights (/layer/kernel): "
        "give the model of a training that converged\n",
    )
    assert not Path("run").exists()


# --------------------------------------------------------------------------- simulate


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--snr", "-1"], "--snr: must be > 0 (var(signal)/var(noise)), got -1.0"),
        (["--tomograms", "0"], "--tomograms: must be >= 1, got 0"),
        (
            ["--templates", "tomo.mrc", "--template-voxel-size", "-1"],
            "--template-voxel-size: must be > 0 Angstrom, got -1.0",
        ),
    ],
)
def test_simulate_refuses_bad_values_naming_the_option(run, extra, message):
    code, stderr = run(["simulate", "--out", "sim", *extra])
    assert code == 2
    assert stderr.splitlines()[-1] == f"deepfinder simulate: error: {message}"
    assert not Path("sim").exists()


def test_simulate_names_a_template_that_is_not_mrc(run):
    Path("template.mrc").write_bytes(np.random.default_rng(1).integers(0, 256, 5000, np.uint8).tobytes())
    code, stderr = run(["simulate", "--out", "sim", "--templates", "template.mrc"])
    assert (code, stderr) == (
        2,
        "deepfinder simulate: error: template.mrc is not a readable MRC file (no MRC header, or a damaged "
        "one: negative count)\n",
    )
    assert not Path("sim").exists()


# --------------------------------------------------------------------------- MRC headers


def test_a_zero_machine_stamp_is_warned_about_once_naming_the_file(run):
    data = bytearray(Path("tomo.mrc").read_bytes())
    data[212:216] = bytes(4)  # the machine stamp, zero as some software writes it
    Path("stamp.mrc").write_bytes(bytes(data))
    argv = targets("particles.csv", "--tomogram", "stamp.mrc", "--initial-labels", "labels.mrc")
    assert run(argv) == (
        0,
        "deepfinder targets: warning: stamp.mrc: non-standard MRC header (Unrecognised machine stamp: "
        "0x00 0x00 0x00 0x00); read permissively\n",
    )


# --------------------------------------------------------------------------- the parser


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"deepfinder {__version__}\n"


def test_every_option_of_every_command_has_help(capsys):
    helps = {"deepfinder": cli.build_parser().format_help()}
    (commands,) = re.findall(r"\{([a-z,]+)\}", helps["deepfinder"])[:1]
    for command in commands.split(","):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        helps[f"deepfinder {command}"] = capsys.readouterr().out
    missing = [f"{name} {option}" for name, text in helps.items() for option in _options_without_help(text)]
    assert missing == []
    assert {"deepfinder simulate", "deepfinder train", "deepfinder evaluate"} <= set(helps)


def _options_without_help(help_text: str) -> list[str]:
    """The options of an argparse help text with no description (beside them or on the next line)."""
    lines = help_text.splitlines() + [""]
    missing = []
    for line, following in zip(lines, lines[1:]):
        if not line.startswith("  -"):
            continue
        invocation, _, beside = line.strip().partition("  ")
        below = following.startswith("    ") and not following.strip().startswith("-")
        if not beside.strip() and not below:
            missing.append(invocation.split(",")[0].split()[0])
    return missing
