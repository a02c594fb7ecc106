"""Outputs are replaced whole or not at all, and never over an input.

Every writer of the engine completes its file under a hidden temporary name and
renames it over the target at the end; a run that fails, is interrupted or killed
leaves the previous outputs byte-identical. An output path that names an input
(directly, through a symbolic link or as a hard link) is refused before any work.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepfinder.core.io import (
    OutputOverwritesInput,
    atomic_output,
    read_volume,
    refuse_overwriting_inputs,
    write_volume,
)
from deepfinder.core.particles import ParticleTable
from deepfinder.core.tables import SameForAll, TomogramGeometry, write_table


def checksum(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def temporaries(folder) -> list[str]:
    """Names of temporary output files left in ``folder``."""
    return sorted(name for name in os.listdir(folder) if ".tmp-" in name)


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """Exit code and standard error of ``deepfinder <argv>`` run in this process."""
    from deepfinder.core.cli import main

    try:
        main(argv)
        code = 0
    except SystemExit as stop:
        code = stop.code
    return code, capsys.readouterr().err


# --------------------------------------------------------------------------- atomic_output


def test_a_completed_output_replaces_the_previous_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with atomic_output(target) as temporary:
        temporary.write_text("new")
        assert target.read_text() == "previous"  # readers see the old file until the end
    assert target.read_text() == "new"
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("stop", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_or_interrupted_output_leaves_the_previous_file(tmp_path, stop):
    target = tmp_path / "out.txt"
    target.write_text("previous")
    with pytest.raises(type(stop)):
        with atomic_output(target) as temporary:
            temporary.write_text("half")
            raise stop
    assert target.read_text() == "previous"
    assert temporaries(tmp_path) == []


def test_a_failed_first_output_leaves_no_file(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "new" / "out.txt") as temporary:
            temporary.write_text("half")
            raise RuntimeError("failed")
    assert os.listdir(tmp_path / "new") == []


def test_temporaries_are_hidden_from_globs_on_the_extension(tmp_path):
    with atomic_output(tmp_path / "labels.mrc") as temporary:
        temporary.write_bytes(b"partial")
        assert temporary.parent == tmp_path and temporary.name.startswith(".")
        assert glob.glob(str(tmp_path / "*.mrc")) == []
        assert list(tmp_path.glob("*.mrc")) == []
        assert list(tmp_path.glob("labels*")) == []


def test_temporaries_of_killed_runs_are_removed_by_the_next_write(tmp_path):
    target = tmp_path / "labels.mrc"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    abandoned = tmp_path / f".labels.mrc.tmp-{int(dead.stdout)}"
    running = tmp_path / ".labels.mrc.tmp-1"  # pid 1 always runs: a live writer's file stays
    other = tmp_path / f".other.mrc.tmp-{int(dead.stdout)}"
    for path in (abandoned, running, other):
        path.write_bytes(b"partial")
    write_volume(target, np.zeros((4, 4, 4), np.int8))
    assert temporaries(tmp_path) == sorted([running.name, other.name])


def test_an_output_through_a_symbolic_link_replaces_the_file_it_points_to(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "labels.mrc").write_bytes(b"previous")
    (tmp_path / "labels.mrc").symlink_to(tmp_path / "data" / "labels.mrc")
    write_volume(tmp_path / "labels.mrc", np.ones((4, 4, 4), np.int8))
    assert (tmp_path / "labels.mrc").is_symlink()
    assert read_volume(tmp_path / "data" / "labels.mrc", mmap=False).sum() == 64


def test_a_volume_that_cannot_be_written_leaves_the_previous_one(tmp_path):
    write_volume(tmp_path / "v.mrc", np.ones((4, 4, 4), np.float32))
    before = checksum(tmp_path / "v.mrc")
    with pytest.raises(ValueError, match="cannot be converted"):
        write_volume(tmp_path / "v.mrc", np.zeros((4, 4, 4), np.complex128))
    assert checksum(tmp_path / "v.mrc") == before
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("extension", [".csv", ".xml", ".star"])
def test_particle_tables_are_written_whole(tmp_path, extension):
    table = ParticleTable(tomo=["t"], class_id=[1], xyz=[[1.0, 2.0, 3.0]])
    path = write_table(
        tmp_path / f"p{extension}",
        table,
        voxel_size=1.0,
        tomograms=SameForAll(TomogramGeometry((8, 8, 8), 1.0)),
    )
    assert path.stat().st_size > 0
    assert temporaries(tmp_path) == []


# --------------------------------------------------------------------------- refusals


def test_outputs_naming_an_input_are_refused_through_links(tmp_path, monkeypatch):
    tomogram = tmp_path / "tomo.mrc"
    tomogram.write_bytes(b"data")
    (tmp_path / "link.mrc").symlink_to(tomogram)
    os.link(tomogram, tmp_path / "hard.mrc")
    monkeypatch.chdir(tmp_path)
    for output in (tomogram, "tomo.mrc", "./sub/../tomo.mrc", tmp_path / "link.mrc", tmp_path / "hard.mrc"):
        with pytest.raises(OutputOverwritesInput, match="would overwrite the input .*tomo.mrc"):
            refuse_overwriting_inputs([tmp_path / "other.mrc", output], [None, tomogram])
    refuse_overwriting_inputs([tmp_path / "labels.mrc", None], [tomogram, None])


def test_two_outputs_naming_one_file_are_refused(tmp_path):
    with pytest.raises(OutputOverwritesInput, match="outputs .*a.csv and .*a.csv are the same file"):
        refuse_overwriting_inputs([tmp_path / "a.csv", tmp_path / "x" / ".." / "a.csv"], [])


def tomogram_file(path, dtype=np.float32) -> Path:
    data = np.random.default_rng(0).normal(size=(16, 16, 16)) * (20 if dtype == np.int8 else 1)
    return write_volume(path, data.astype(dtype), voxel_size=10.0)


@pytest.mark.parametrize("dtype", [np.float32, np.int8])
@pytest.mark.parametrize("link", ["same path", "symbolic link", "hard link"])
def test_segment_refuses_labels_over_its_tomogram(tmp_path, capsys, dtype, link):
    tomogram = tomogram_file(tmp_path / "tomo.mrc", dtype)
    labels = {
        "same path": tomogram,
        "symbolic link": tmp_path / "sym.mrc",
        "hard link": tmp_path / "hard.mrc",
    }
    if link == "symbolic link":
        labels[link].symlink_to(tomogram)
    elif link == "hard link":
        os.link(tomogram, labels[link])
    (tmp_path / "m.weights.h5").write_bytes(b"never loaded")
    before = checksum(tomogram)
    code, err = run_cli(
        ["segment", "--tomogram", str(tomogram), "--model", str(tmp_path / "m.weights.h5")]
        + ["--labels", str(labels[link])],
        capsys,
    )
    assert code == 2
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(f"output {labels[link]} would overwrite the input {tomogram}: choose another output path")
    )
    assert "Traceback" not in err
    assert checksum(tomogram) == before


def test_segment_refuses_score_maps_over_its_tomogram(tmp_path, capsys):
    tomogram = tomogram_file(tmp_path / "run_class1.mrc")
    (tmp_path / "m.weights.h5").write_bytes(b"never loaded")
    before = checksum(tomogram)
    code, err = run_cli(
        ["segment", "--tomogram", str(tomogram), "--model", str(tmp_path / "m.weights.h5")]
        + ["--labels", str(tmp_path / "labels.mrc"), "--scores", str(tmp_path / "run.mrc")],
        capsys,
    )
    assert code == 2 and f"would overwrite the input {tomogram}" in err
    assert checksum(tomogram) == before
    assert not (tmp_path / "labels.mrc").exists()


@pytest.mark.parametrize("through_link", [False, True])
def test_targets_refuses_to_paint_over_its_tomogram(tmp_path, capsys, through_link):
    tomogram = tomogram_file(tmp_path / "tomo.mrc")
    out = tmp_path / "out.mrc" if through_link else tomogram
    if through_link:
        out.symlink_to(tomogram)
    write_table(tmp_path / "p.csv", ParticleTable(tomo=["tomo"], class_id=[1], xyz=[[8.0, 8.0, 8.0]]))
    before = checksum(tomogram)
    code, err = run_cli(
        ["targets", "--tomogram", str(tomogram), "--particles", str(tmp_path / "p.csv")]
        + ["--radius", "3", "--out", str(out)],
        capsys,
    )
    assert code == 2 and f"output {out} would overwrite the input {tomogram}" in err
    assert checksum(tomogram) == before


def test_evaluate_refuses_to_write_over_the_detections(tmp_path, capsys):
    table = ParticleTable(tomo=["t"], class_id=[1], xyz=[[8.0, 8.0, 8.0]])
    detected = write_table(tmp_path / "detected.csv", table)
    reference = write_table(tmp_path / "reference.csv", table)
    before = checksum(detected)
    code, err = run_cli(
        ["evaluate", "--detected", str(detected), "--reference", str(reference)]
        + ["--tolerance", "2", "--output", str(detected)],
        capsys,
    )
    assert code == 2 and f"output {detected} would overwrite the input {detected}" in err
    assert checksum(detected) == before


def test_training_refuses_to_fine_tune_a_model_it_would_overwrite(tmp_path):
    from deepfinder.core.settings import TrainingSettings
    from deepfinder.core.train import train

    (tmp_path / "best.weights.h5").write_bytes(b"earlier model")
    with pytest.raises(OutputOverwritesInput, match=r"best.weights.h5 would overwrite the input"):
        train(
            [tmp_path / "tomo.mrc"],
            [tmp_path / "labels.mrc"],
            [ParticleTable(tomo=["t"], class_id=[1], xyz=[[8.0, 8.0, 8.0]])],
            tmp_path,
            2,
            TrainingSettings(),
            initial_weights=tmp_path / "best.weights.h5",
        )
    assert (tmp_path / "best.weights.h5").read_bytes() == b"earlier model"
    assert os.listdir(tmp_path) == ["best.weights.h5"]


# --------------------------------------------------------------------------- segmentation stopped midway


def previous_outputs(folder: Path, shape) -> dict[Path, str]:
    """A complete earlier label map and score maps in ``folder``, with their checksums."""
    paths = [
        write_volume(folder / "labels.mrc", np.ones(shape, np.int8)),
        *(write_volume(folder / f"s_class{k}.mrc", np.full(shape, 0.5, np.float16)) for k in (1, 2)),
    ]
    return {path: checksum(path) for path in paths}


# A read-only score folder: test_cli_catalogue.py (through the command line, as root too).
@pytest.mark.slow
def test_segmentation_failing_on_its_score_folder_leaves_the_previous_maps(tmp_path, weights):
    from deepfinder.core.segment import segment_tomogram
    from deepfinder.core.settings import SegmentationSettings

    tomogram = tomogram_file(tmp_path / "tomo.mrc")
    before = previous_outputs(tmp_path, (16, 16, 16))
    scores = tmp_path / "scores"
    scores.write_text("not a folder")
    with pytest.raises(OSError):
        segment_tomogram(
            tomogram, weights, tmp_path / "labels.mrc", scores / "s.mrc", SegmentationSettings(patch_size=16)
        )
    assert {path: checksum(path) for path in before} == before
    assert temporaries(tmp_path) == []


# Deep enough that, once row 2 is done, the signal comes long before the last row on an idle CPU.
STOPPED_SHAPE = (384, 64, 64)


def start_segmentation(folder: Path, weights: Path) -> subprocess.Popen:
    """``deepfinder segment`` of a tomogram in 32 rows of tiles (seconds) in a subprocess,
    returned once the first rows of tiles have been written to the temporary label map."""
    tomogram = write_volume(folder / "tomo.mrc", np.random.default_rng(0).normal(size=STOPPED_SHAPE))
    process = subprocess.Popen(
        [sys.executable, "-m", "deepfinder.core.cli", "segment", "--tomogram", str(tomogram)]
        + ["--model", str(weights), "--labels", str(folder / "labels.mrc")]
        + ["--scores", str(folder / "s.mrc"), "--patch-size", "16", "--crop", "2", "--average-rotations"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        # A shell's background job (CI) starts with SIGINT ignored, and Python then keeps ignoring it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    for line in process.stdout:
        rows_done = re.search(r"\((\d+)/\d+ rows\) done", line)
        if rows_done and int(rows_done.group(1)) >= 2:  # row 1's slabs are written when row 2 starts
            return process
    process.wait()
    raise AssertionError(f"segmentation ended (exit {process.returncode}) before its second row of tiles")


@pytest.mark.slow
@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL])
def test_segmentation_stopped_midway_leaves_the_previous_maps(tmp_path, weights, stop):
    from deepfinder.core.segment import segment_tomogram
    from deepfinder.core.settings import SegmentationSettings

    before = previous_outputs(tmp_path, STOPPED_SHAPE)
    process = start_segmentation(tmp_path, weights)
    partial = tmp_path / f".labels.mrc.tmp-{process.pid}"
    assert partial.exists()  # the signal comes while the new maps are being written
    process.send_signal(stop)
    process.communicate(timeout=60)
    assert process.returncode != 0
    assert {path: checksum(path) for path in before} == before
    if stop == signal.SIGKILL:
        # Nothing runs in a killed process: its hidden temporaries stay until the next run.
        assert partial.exists()
        segment_tomogram(
            tmp_path / "tomo.mrc",
            weights,
            tmp_path / "labels.mrc",
            tmp_path / "s.mrc",
            SegmentationSettings(patch_size=64),
        )
        assert read_volume(tmp_path / "labels.mrc").shape == STOPPED_SHAPE
    assert temporaries(tmp_path) == []
