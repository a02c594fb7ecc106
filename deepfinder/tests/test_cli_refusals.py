"""Bad and awkward inputs through the ``deepfinder`` command line, as a user would give them.

Each case checks what the user sees: the exit code (2 for a refused input or usage, 0 when it
works), one line naming the file and the problem (no traceback), no output written, and every
input file unchanged (same checksum). The cases run ``cli.main`` in this process; a few run in a
new process too, where only a real process shows the contract: its exit code, a stderr free of
TensorFlow's start-up lines, the traceback of ``--debug``, paths in the file system's encoding.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from deepfinder.core.io import read_volume, write_volume

pytestmark = pytest.mark.filterwarnings("ignore:Data array contains NaN")  # writing the NaN tomograms

VOXEL_SIZE = 10.0
SHAPE = (16, 16, 16)
CSV_HEADER = "tomo,class_id,x,y,z\n"
GOOD_ROWS = "tomo,1,8,8,8\ntomo,2,4,4,4\n"
STAR5_HEADER = "data_particles\nloop_\n_rlnTomoName\n" + "".join(
    f"_rlnCenteredCoordinate{axis}Angst\n" for axis in "XYZ"
)
STAR_HEADER = (
    "data_particles\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n_rlnCoordinateZ #4\n"
)


def _write_inputs(folder: Path) -> None:
    """A tiny consistent data set: tomogram, label map (3 classes), particle table."""
    rng = np.random.default_rng(0)
    write_volume(folder / "tomo.mrc", rng.normal(size=SHAPE).astype(np.float32), VOXEL_SIZE)
    labels = np.zeros(SHAPE, np.int8)
    labels[7:10, 7:10, 7:10] = 1
    labels[3:6, 3:6, 3:6] = 2
    write_volume(folder / "labels.mrc", labels, VOXEL_SIZE)
    (folder / "particles.csv").write_text(CSV_HEADER + GOOD_ROWS)


def _write(folder: Path, name: str, text: str) -> str:
    (folder / name).write_text(text)
    return name


def _volume(folder: Path, name: str, data, voxel_size: float = VOXEL_SIZE) -> str:
    write_volume(folder / name, np.asarray(data), voxel_size)
    return name


def _truncated(folder: Path) -> str:
    data = (folder / "tomo.mrc").read_bytes()
    (folder / "cut.mrc").write_bytes(data[: len(data) // 2])
    return "cut.mrc"


def _mode(folder: Path, mode: int) -> str:
    data = bytearray((folder / "tomo.mrc").read_bytes())
    data[12:16] = np.int32(mode).tobytes()
    (folder / "mode.mrc").write_bytes(bytes(data))
    return "mode.mrc"


def _huge_header(folder: Path) -> str:
    data = bytearray((folder / "tomo.mrc").read_bytes())
    data[92:96] = np.int32(10**9).tobytes()  # nsymbt: extended header bytes
    (folder / "huge.mrc").write_bytes(bytes(data))
    return "huge.mrc"


def _garbage(folder: Path, name: str, size: int = 5000) -> str:
    (folder / name).write_bytes(np.random.default_rng(1).integers(0, 256, size, dtype=np.uint8).tobytes())
    return name


def _model(folder: Path, json_text: str = '{"n_classes": 3}') -> str:
    _garbage(folder, "model.weights.h5")
    (folder / "model.json").write_text(json_text)
    return "model.weights.h5"


def _coarse_model(folder: Path, json_text: str) -> str:
    _garbage(folder, "coarse.weights.h5")
    (folder / "coarse.json").write_text(json_text)
    return "coarse.weights.h5"


def targets(tomogram="tomo.mrc", particles="particles.csv", *extra):
    return [
        "targets",
        "--tomogram",
        tomogram,
        "--particles",
        particles,
        "--radius",
        "1",
        "--out",
        "out/l.mrc",
    ] + list(extra)


def segment(tomogram="tomo.mrc", model="model.weights.h5", *extra):
    return ["segment", "--tomogram", tomogram, "--model", model, "--labels", "out/l.mrc", *extra]


def train(tomogram="tomo.mrc", labels="labels.mrc", particles="particles.csv", *extra):
    return [
        "train",
        "--tomograms",
        tomogram,
        "--labels",
        labels,
        "--particles",
        particles,
        "--classes",
        "3",
        "--out",
        "out/run",
        "--patch-size",
        "8",
        "--shift",
        "2",
        *extra,
    ]


TARGETS = "deepfinder targets: error: "
SEGMENT = "deepfinder segment: error: "
TRAIN = "deepfinder train: error: "

# (case, command line from the data folder, exit code, the last line of stderr)
REFUSALS = [
    ("missing tomogram", lambda f: targets("absent.mrc"), 2, TARGETS + "Volume file not found: absent.mrc"),
    (
        "corrupt MRC",
        lambda f: targets(_garbage(f, "bad.mrc")),
        2,
        TARGETS + "bad.mrc is not a readable MRC file (no MRC header, or a damaged one: negative count)",
    ),
    (
        "truncated MRC",
        lambda f: targets(_truncated(f)),
        2,
        TARGETS + "cut.mrc is truncated: 8704 bytes, but its header describes 16x16x16 voxels of "
        "MRC mode 2 (17408 bytes)",
    ),
    (
        "unknown MRC mode",
        lambda f: targets(_mode(f, 5)),
        2,
        TARGETS + "mode.mrc: MRC mode 5 is not supported (use mode 0, 1, 2, 6 or 12)",
    ),
    (
        "empty MRC file",
        lambda f: targets(_write(f, "empty.mrc", "")),
        2,
        TARGETS + "empty.mrc is not a readable MRC file (no MRC header, or a damaged one: "
        "Couldn't read enough bytes for MRC header)",
    ),
    (
        "CSV with a missing value",
        lambda f: targets("tomo.mrc", _write(f, "p.csv", CSV_HEADER + "tomo,1,8,8,\n")),
        2,
        TARGETS + "p.csv:2:5: column z: missing value",
    ),
    (
        "CSV with a word for a number",
        lambda f: targets("tomo.mrc", _write(f, "p.csv", CSV_HEADER + GOOD_ROWS + "tomo,1,8,forty,8\n")),
        2,
        TARGETS + "p.csv:4:4: column y: 'forty' is not a number",
    ),
    (
        "CSV with a fractional class",
        lambda f: targets("tomo.mrc", _write(f, "p.csv", CSV_HEADER + "tomo,1.5,8,8,8\n")),
        2,
        TARGETS + "p.csv:2:2: column class_id: class ids are whole numbers, got 1.5",
    ),
    (
        "foreign CSV",
        lambda f: targets("tomo.mrc", _write(f, "p.csv", "name;X;Y;Z\na;1;2;3\n")),
        2,
        TARGETS + "p.csv:1: missing column(s) class_id, x, y, z; expected columns "
        "tomo, class_id, x, y, z, phi, theta, psi, score",
    ),
    (
        "CSV without particles",
        lambda f: targets("tomo.mrc", _write(f, "p.csv", CSV_HEADER)),
        2,
        TARGETS + "p.csv: no particle in the table",
    ),
    (
        "empty CSV file",
        lambda f: targets("tomo.mrc", _write(f, "p.csv", "")),
        2,
        TARGETS + "p.csv:1: missing column(s) class_id, x, y, z; expected columns "
        "tomo, class_id, x, y, z, phi, theta, psi, score",
    ),
    (
        "broken XML",
        lambda f: targets("tomo.mrc", _write(f, "p.xml", "<objlist><object x='1'")),
        2,
        TARGETS + "p.xml: not a readable XML object list (unclosed token: line 1, column 9)",
    ),
    (
        "XML object without z",
        lambda f: targets(
            "tomo.mrc", _write(f, "p.xml", '<objlist><object class_label="1" x="2" y="3"/></objlist>')
        ),
        2,
        TARGETS + "p.xml: object 1: attribute z: missing value",
    ),
    (
        "XML without particles",
        lambda f: targets("tomo.mrc", _write(f, "p.xml", "<objlist/>")),
        2,
        TARGETS + "p.xml: no particle in the table",
    ),
    (
        "STAR with a word for a number",
        lambda f: targets("tomo.mrc", _write(f, "p.star", STAR_HEADER + "tomo 8 8 8\ntomo 4 four 4\n")),
        2,
        TARGETS + "p.star:8:8: _rlnCoordinateY: 'four' is not a number",
    ),
    (
        "STAR row with a missing value",
        lambda f: targets("tomo.mrc", _write(f, "p.star", STAR_HEADER + "tomo 8 8\n")),
        2,
        TARGETS + "p.star:7:9: 3 values for the 4 labels of data_particles",
    ),
    (
        "STAR without a loop",
        lambda f: targets("tomo.mrc", _write(f, "p.star", "data_particles\n_rlnCoordinateX 3\n")),
        2,
        TARGETS + "p.star: block data_particles has no _rlnCoordinateY column",
    ),
    (
        "MRC with a huge extended header",
        lambda f: targets(_huge_header(f)),
        2,
        TARGETS + "huge.mrc is truncated: 17408 bytes, but its header describes 16x16x16 voxels of "
        "MRC mode 2 (1000017408 bytes)",
    ),
    (
        "voxel size for relion5 STAR positions",
        lambda f: targets(
            "tomo.mrc",
            _write(f, "p.star", STAR5_HEADER + "tomo 0 0 0\n"),
            "--coordinates-voxel-size",
            "20",
        ),
        2,
        TARGETS + "p.star states its positions' units (10 A per pixel): drop the coordinates' voxel size",
    ),
    (
        "coordinates' voxel size for a tomogram without one",
        lambda f: targets(
            _volume(f, "nosize.mrc", np.random.default_rng(2).normal(size=SHAPE).astype(np.float32), 0.0),
            "particles.csv",
            "--coordinates-voxel-size",
            "20",
        ),
        2,
        TARGETS
        + "nosize.mrc: no voxel size in the MRC header, needed to place the positions of particles.csv "
        "(20 A per pixel)",
    ),
    (
        "unknown table type",
        lambda f: targets("tomo.mrc", _write(f, "p.txt", GOOD_ROWS)),
        2,
        TARGETS + "p.txt: unknown particle table extension '.txt': use .csv, .json, .mod, .star, .tbl, .xml "
        "or a copick project's folder, or name the format "
        "(csv, xml, relion5, relion4, dynamo, stopgap, imod, copick)",
    ),
    (
        "table of other tomograms",
        lambda f: targets("tomo.mrc", _write(f, "p.csv", CSV_HEADER + "a,1,8,8,8\nb,1,4,4,4\n")),
        2,
        TARGETS + "p.csv: no particle of tomo.mrc (tomogram ids ['a', 'b']): "
        "name it with --tomo-id or give one particle file per tomogram",
    ),
    (
        "class id beyond a label map's range",
        lambda f: targets("tomo.mrc", _write(f, "p.csv", CSV_HEADER + "tomo,300,8,8,8\n")),
        2,
        TARGETS
        + "p.csv: particle class ids must be in 1..255 (0 is background), got [300]: renumber the classes",
    ),
    (
        "initial labels of another shape",
        lambda f: targets(
            "tomo.mrc",
            "particles.csv",
            "--initial-labels",
            _volume(f, "init.mrc", np.zeros((8, 16, 16), np.int8)),
        ),
        2,
        TARGETS + "init.mrc: the initial label map has shape (8, 16, 16) but the tomogram has (16, 16, 16): "
        "they must match voxel for voxel",
    ),
    (
        "output inside a file",
        lambda f: (
            ["targets", "--tomogram", "tomo.mrc", "--particles", "particles.csv", "--radius", "1"]
            + ["--out", "particles.csv/l.mrc"]
        ),
        2,
        TARGETS + "particles.csv: File exists",
    ),
    (
        "missing option",
        lambda f: ["targets", "--tomogram", "tomo.mrc", "--radius", "1", "--out", "out/l.mrc"],
        2,
        TARGETS + "the following arguments are required: --particles",
    ),
    (
        "word for a voxel size",
        lambda f: targets("tomo.mrc", "particles.csv", "--coordinates-voxel-size", "ten"),
        2,
        TARGETS + "argument --coordinates-voxel-size: invalid float value: 'ten'",
    ),
    (
        "NaN tomogram",
        lambda f: segment(_volume(f, "nan.mrc", np.full(SHAPE, np.nan, np.float32))),
        2,
        SEGMENT + "Tomogram nan.mrc: The tomogram contains NaN or infinite values: fix or re-reconstruct it",
    ),
    (
        "constant tomogram",
        lambda f: segment(_volume(f, "flat.mrc", np.ones(SHAPE, np.float32))),
        2,
        SEGMENT + "Tomogram flat.mrc: The tomogram is constant (no contrast): check the file",
    ),
    (
        "segment patch larger than the volume",
        lambda f: segment("tomo.mrc", _model(f), "--patch-size", "64"),
        2,
        SEGMENT + "Tomogram tomo.mrc: patch_size 64 is larger than the tomogram (shape (16, 16, 16)): "
        "use patch_size <= 16",
    ),
    (
        "spectrum matching with a model that lacks its training spectrum",
        lambda f: segment("tomo.mrc", _model(f), "--match-spectrum"),
        2,
        SEGMENT + "model.weights.h5 does not hold the amplitude spectrum of its training tomograms (trained "
        "by an earlier version, or upstream DeepFinder weights): segment without spectrum matching, or "
        "train it again",
    ),
    (
        "coarse model not trained at twice the voxel size",
        lambda f: segment(
            "tomo.mrc",
            _model(f, '{"n_classes": 3, "voxel_size": 10}'),
            "--coarse-model",
            _coarse_model(f, '{"n_classes": 3, "voxel_size": 10}'),
        ),
        2,
        SEGMENT + "The coarse model coarse.weights.h5 was trained at 10 A/voxel, the model model.weights.h5 "
        "at 10: the coarse model must be trained at twice its voxel size (20 A/voxel: train it with "
        "binning 2 on the model's inputs)",
    ),
    (
        "missing model",
        lambda f: segment("tomo.mrc", "absent.weights.h5"),
        2,
        SEGMENT + "Model weights not found: absent.weights.h5",
    ),
    (
        "model description not JSON",
        lambda f: segment("tomo.mrc", _model(f, "{n_classes: 3")),
        2,
        SEGMENT + "model.json is not a readable model description (JSON): "
        "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    ),
    (
        "train label map of another shape",
        lambda f: train("tomo.mrc", _volume(f, "small.mrc", np.zeros((8, 16, 16), np.int8))),
        2,
        TRAIN + "Label map small.mrc has shape (8, 16, 16) but tomogram tomo.mrc has (16, 16, 16): "
        "they must match voxel for voxel",
    ),
    (
        "train labels beyond the class count",
        lambda f: train("tomo.mrc", _volume(f, "l5.mrc", np.full(SHAPE, 5, np.int8))),
        2,
        TRAIN + "Label map l5.mrc holds labels 5..5 but training is for 3 classes (0..2)",
    ),
    (
        "train particle class beyond the class count",
        lambda f: train("tomo.mrc", "labels.mrc", _write(f, "p.csv", CSV_HEADER + "tomo,3,8,8,8\n")),
        2,
        TRAIN
        + "Particles of tomo.mrc have class id(s) [3], outside 1..2 for 3 classes (0: background points)",
    ),
    (
        "train patch larger than the volume",
        lambda f: train("tomo.mrc", "labels.mrc", "particles.csv", "--patch-size", "32"),
        2,
        TRAIN + "Patch size 32 is larger than tomogram tomo.mrc (16, 16, 16): use a patch size <= 16",
    ),
    (
        "train NaN tomogram",
        lambda f: train(_volume(f, "nan.mrc", np.full(SHAPE, np.nan, np.float32))),
        2,
        TRAIN + "Tomogram nan.mrc: The tomogram contains NaN or infinite values: fix or re-reconstruct it",
    ),
    (
        "train table without particles",
        lambda f: train("tomo.mrc", "labels.mrc", _write(f, "p.csv", CSV_HEADER)),
        2,
        TRAIN + "p.csv: no particle in the table",
    ),
    (
        "train from a model whose description is not JSON",
        lambda f: train("tomo.mrc", "labels.mrc", "particles.csv", "--initial-weights", _model(f, "[3")),
        2,
        TRAIN + "model.json is not a readable model description (JSON): "
        "Expecting ',' delimiter: line 1 column 3 (char 2)",
    ),
    (
        "train two tables for one tomogram",
        lambda f: (
            ["train", "--tomograms", "tomo.mrc", "--labels", "labels.mrc"]
            + ["--particles", "particles.csv", "particles.csv", "--classes", "3", "--out", "out/run"]
        ),
        2,
        TRAIN + "give one particle file per tomogram (1) or a single one, not 2",
    ),
    (
        "train patch not a multiple of 4",
        lambda f: train("tomo.mrc", "labels.mrc", "particles.csv", "--patch-size", "10"),
        2,
        TRAIN + "--patch-size: 10 is not a multiple of 4: use 8 or 12 (the U-net pools twice by 2)",
    ),
    (
        "evaluate a table with a word for a number",
        lambda f: (
            ["evaluate", "--detected", _write(f, "d.csv", CSV_HEADER + "tomo,1,x1,2,3\n")]
            + ["--reference", "particles.csv", "--tolerance", "2"]
        ),
        2,
        "deepfinder evaluate: error: d.csv:2:3: column x: 'x1' is not a number",
    ),
    (
        "evaluate in Angstrom without the voxel size",
        lambda f: (
            ["evaluate", "--detected", "particles.csv", "--reference", "particles.csv"]
            + ["--tolerance-angstrom", "20"]
        ),
        2,
        "deepfinder evaluate: error: --tolerance-angstrom needs --voxel-size",
    ),
    (
        "evaluate with a tomogram for the occupancy map",
        lambda f: (
            ["evaluate", "--detected", "particles.csv", "--reference", "particles.csv"]
            + ["--occupancy", _volume(f, "occupancy.mrc", np.full(SHAPE, 0.5, np.float32))]
        ),
        2,
        "deepfinder evaluate: error: occupancy.mrc: the occupancy map holds 0.5, not a particle id: it must "
        "hold whole numbers, 0 outside the particles and i + 1 inside particle i of the reference (the "
        "simulator's <name>_occupancy.mrc, SHREC's occupancy_mask.mrc), not a tomogram or a score map",
    ),
    (
        "cluster without the radius of a class",
        lambda f: ["cluster", "--labels", "labels.mrc", "--radius", "1:2", "--output", "out/p.csv"],
        2,
        "deepfinder cluster: error: --radius: no value for class(es) [2]: give CLASS:VALUE for each of the "
        "classes [1, 2], or one value for all",
    ),
    (
        "cluster a float map",
        lambda f: ["cluster", "--labels", "tomo.mrc", "--radius", "2", "--output", "out/p.csv"],
        2,
        "deepfinder cluster: error: tomo.mrc: the label map must hold integer class labels, got float32: "
        "give a label map (from segment or targets), not a tomogram or a score map",
    ),
]


def _checksums(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize(
    "make_argv, code, message", [case[1:] for case in REFUSALS], ids=[c[0] for c in REFUSALS]
)
def test_a_bad_input_is_refused_in_one_line_and_nothing_changes(
    cli_in_process, tmp_path, make_argv, code, message
):
    _assert_refused(cli_in_process, tmp_path, make_argv, code, message)


# One refusal of each command that reads files, in a new process: the exit code and stderr the shell gets.
IN_A_PROCESS = ["missing tomogram", "CSV with a missing value", "missing model", "train NaN tomogram"]


@pytest.mark.parametrize(
    "make_argv, code, message",
    [case[1:] for case in REFUSALS if case[0] in IN_A_PROCESS],
    ids=IN_A_PROCESS,
)
def test_a_bad_input_is_refused_by_a_process_in_one_line(cli_process, tmp_path, make_argv, code, message):
    _assert_refused(cli_process, tmp_path, make_argv, code, message)


def _assert_refused(run, folder: Path, make_argv, code: int, message: str) -> None:
    """``run`` the command line of ``make_argv`` on the inputs in ``folder``: refused with ``code`` and
    the one error line ``message``, the inputs unchanged and no output written."""
    _write_inputs(folder)
    argv = make_argv(folder)
    before = _checksums(folder)
    result = run(folder, argv)
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == message
    assert "Traceback" not in result.stderr
    # Besides the error line: argparse's usage, or warnings found while checking, one line each.
    assert [line for line in lines if ": error: " in line] == [message]
    assert all(line.startswith(("usage:", " ")) or ": warning: " in line for line in lines[:-1]), (
        result.stderr
    )
    assert _checksums(folder) == before
    assert not (folder / "out").exists()


def test_a_corrupt_model_is_named(cli_process, tmp_path):
    _write_inputs(tmp_path)
    _model(tmp_path)
    before = _checksums(tmp_path)
    result = cli_process(tmp_path, segment())
    assert result.returncode == 2
    assert result.stderr.startswith(
        SEGMENT + "model.weights.h5 is not a readable model file (HDF5 weights): "
    ), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # nor TensorFlow's start-up lines
    assert _checksums(tmp_path) == before
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(cli_process, tmp_path):
    _write_inputs(tmp_path)
    result = cli_process(tmp_path, targets("absent.mrc") + ["--debug"])
    assert result.returncode == 1
    assert result.stderr.startswith("Traceback")
    assert result.stderr.strip().endswith("FileNotFoundError: Volume file not found: absent.mrc")


def test_a_path_with_spaces_and_accents_works(cli_process, tmp_path):
    folder = tmp_path / "données à voir"
    folder.mkdir()
    _write_inputs(folder)
    (folder / "tomo.mrc").rename(folder / "tomo ü.mrc")
    (folder / "particles.csv").write_text(CSV_HEADER + GOOD_ROWS.replace("tomo,", "tomo ü,"))
    before = _checksums(folder)
    result = cli_process(folder, targets("tomo ü.mrc", "particles.csv") + ["--out", "sortie é/l é.mrc"])
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    labels = read_volume(folder / "sortie é" / "l é.mrc")
    assert labels[8, 8, 8] == 1 and labels[4, 4, 4] == 2
    assert _checksums(folder) == {**before, **{"sortie é/l é.mrc": _checksums(folder)["sortie é/l é.mrc"]}}


def test_coordinates_at_another_voxel_size_are_rescaled(cli_in_process, tmp_path):
    _write_inputs(tmp_path)
    # Picked at 20 A/voxel, half the tomogram's sampling: (4, 4, 4) there is (8, 8, 8) here.
    _write(tmp_path, "p20.csv", CSV_HEADER + "tomo,1,4,4,4\ntomo,2,2,2,6\n")
    result = cli_in_process(tmp_path, targets("tomo.mrc", "p20.csv", "--coordinates-voxel-size", "20"))
    assert result.returncode == 0, result.stderr
    labels = read_volume(tmp_path / "out" / "l.mrc")
    assert labels[8, 8, 8] == 1 and labels[12, 4, 4] == 2
    assert labels[4, 4, 4] == 0
    assert np.count_nonzero(labels) == 14  # two balls of radius 1


def test_coordinates_that_do_not_fit_at_the_given_voxel_size_are_warned_about(cli_in_process, tmp_path):
    _write_inputs(tmp_path)
    result = cli_in_process(tmp_path, targets("tomo.mrc", "particles.csv", "--coordinates-voxel-size", "30"))
    assert result.returncode == 0, result.stderr
    assert (
        "particles.csv: 1 of 2 positions lie outside the tomogram (x, y, z) = (16, 16, 16) at 30 A/voxel "
        "(10 A/voxel in the tomogram): is the coordinates' voxel size right?"
    ) in result.stdout
    assert result.stderr.strip() == (
        "deepfinder targets: warning: 1 of 2 particles lie outside the volume (z, y, x) = (16, 16, 16) "
        "and were skipped; check the coordinates' units (voxels) and binning"
    )


def test_an_unexpected_failure_is_one_line_with_exit_code_1(cli_in_process, tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("deepfinder.core.io.read_volume", fail)
    result = cli_in_process(tmp_path, targets())
    assert (result.returncode, result.stderr) == (
        1,
        "deepfinder targets: error: RuntimeError: disk on fire (run with --debug for the traceback)\n",
    )


def test_an_interrupt_exits_with_code_130(cli_in_process, tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("deepfinder.core.io.read_volume", interrupt)
    result = cli_in_process(tmp_path, targets())
    assert (result.returncode, result.stderr) == (130, "deepfinder targets: interrupted\n")


def test_truncated_mrc_read_by_the_engine_says_the_expected_size(tmp_path):
    _write_inputs(tmp_path)
    with pytest.raises(ValueError, match="is truncated: 8704 bytes"):
        read_volume(tmp_path / _truncated(tmp_path))
    with mrcfile.open(tmp_path / "tomo.mrc") as mrc:
        assert mrc.data.shape == SHAPE
