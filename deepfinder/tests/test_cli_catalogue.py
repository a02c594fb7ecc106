"""More bad and awkward conditions through the ``deepfinder`` command line (issue 15's catalogue,
beside test_cli_refusals.py): a full disk, read-only folders, the permissions of replaced files,
and the kinds of input that module has no case of (complex MRC modes, large extended headers,
tiny volumes, empty label maps, other samplings, spaces and accents along a whole chain).

Each case runs the command in a fresh process and checks what the user sees (exit code, one
line naming the file) and what is left on disk (earlier outputs and inputs byte-identical,
no temporary file).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deepfinder.core.io import write_volume

VOXEL_SIZE = 10.0
SHAPE = (32, 64, 64)
PARTICLES = "tomo,class_id,x,y,z\ntomo,1,8,8,8\ntomo,2,30,30,20\ntomo,1,50,50,10\ntomo,2,50,10,20\n"
# Free space left on a full disk, and the file-size limit: less than any output here.
FREE_BYTES = 16 * 1024


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def temporaries(folder: Path) -> list[str]:
    return sorted(str(path) for path in folder.rglob("*") if ".tmp-" in path.name)


def run(folder: Path, argv: list[str], prefix=(), **options) -> subprocess.CompletedProcess:
    """``deepfinder <argv>`` in ``folder``, in a new process (after the words of ``prefix``)."""
    return subprocess.run(
        [*prefix, sys.executable, "-m", "deepfinder.core.cli", *argv],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=600,
        **options,
    )


def write_inputs(folder: Path) -> None:
    """A tomogram, its label map (classes 1 and 2) and particle table."""
    write_volume(
        folder / "tomo.mrc", np.random.default_rng(0).normal(size=SHAPE).astype(np.float32), VOXEL_SIZE
    )
    labels = np.zeros(SHAPE, np.int8)
    labels[6:11, 6:11, 6:11] = 1
    labels[18:23, 28:33, 28:33] = 2
    labels[8:13, 48:53, 48:53] = 1
    labels[18:23, 8:13, 48:53] = 2
    write_volume(folder / "labels.mrc", labels, VOXEL_SIZE)
    (folder / "particles.csv").write_text(PARTICLES)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    import keras

    from deepfinder.core.model import build_unet, save_model

    keras.utils.set_random_seed(0)
    return save_model(build_unet(3), tmp_path_factory.mktemp("model") / "unet.weights.h5", {})


def copy_model(weights: Path, folder: Path) -> str:
    for path in (weights, weights.with_name("unet.json")):
        (folder / path.name).write_bytes(path.read_bytes())
    return weights.name


def segment(model: str, labels: str, *extra: str) -> list[str]:
    return [
        "segment",
        "--tomogram",
        "tomo.mrc",
        "--model",
        model,
        "--labels",
        labels,
        "--patch-size",
        "32",
        *extra,
    ]


def targets(out: str, *extra: str) -> list[str]:
    return [
        "targets",
        "--tomogram",
        "tomo.mrc",
        "--particles",
        "particles.csv",
        "--radius",
        "3",
        "--out",
        out,
        *extra,
    ]


def train(out: str, *extra: str) -> list[str]:
    return (
        ["train", "--tomograms", "tomo.mrc", "--labels", "labels.mrc", "--particles", "particles.csv"]
        + [
            "--classes",
            "3",
            "--out",
            out,
            "--patch-size",
            "16",
            "--batch-size",
            "2",
            "--steps-per-epoch",
            "2",
        ]
        + ["--val-steps", "1", "--val-fraction", "0.3", "--shift", "2", "--quiet", *extra]
    )


# --------------------------------------------------------------------------- a full disk


@contextlib.contextmanager
def full_disk(kind: str, folder: Path):
    """Options of :func:`run` under which writes in ``folder`` fail once FREE_BYTES more are written.

    ``"full file system"``: ``folder`` is a small tmpfs, filled up when the block's code has
    written the earlier outputs (``fill()``); writes fail with ENOSPC. ``"file-size limit"``:
    the command runs under ``ulimit -f`` (Python ignores SIGXFSZ, so writes fail with EFBIG).
    """
    if kind == "file-size limit":

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (FREE_BYTES, FREE_BYTES))

        yield {"preexec_fn": limit}, lambda: None
        return
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], capture_output=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")

    def fill():
        with open(folder / "filler", "wb") as filler:
            with contextlib.suppress(OSError):
                while True:
                    filler.write(bytes(1 << 20))
                    filler.flush()
            filler.truncate(max(filler.tell() - FREE_BYTES, 0))
        assert os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize <= 2 * FREE_BYTES

    try:
        yield {}, fill
    finally:
        subprocess.run(["umount", "--lazy", str(folder)], check=True)


FULL_DISKS = {"full file system": "No space left on device", "file-size limit": "File too large"}


def assert_refused_for_lack_of_space(result, command: str, outputs: list[str], reason: str) -> None:
    """Exit 1 and one line naming one of ``outputs`` (as given) and the reason."""
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0] in [
        f"deepfinder {command}: error: {output}: {reason} (run with --debug for the traceback)"
        for output in outputs
    ], result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("kind", FULL_DISKS)
def test_segmentation_on_a_full_disk_leaves_the_previous_maps(tmp_path, weights, kind):
    write_inputs(tmp_path)
    model = copy_model(weights, tmp_path)
    with full_disk(kind, tmp_path / "disk") as (options, fill):
        first = run(tmp_path, segment(model, "disk/l.mrc", "--scores", "disk/s.mrc"))
        assert first.returncode == 0, first.stderr
        fill()
        before = checksums(tmp_path)
        result = run(tmp_path, segment(model, "disk/l.mrc", "--scores", "disk/s.mrc"), **options)
        outputs = ["disk/l.mrc", "disk/s_class1.mrc", "disk/s_class2.mrc", "disk/s_class0.mrc"]
        assert_refused_for_lack_of_space(result, "segment", outputs, FULL_DISKS[kind])
        assert checksums(tmp_path) == before
        assert temporaries(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", FULL_DISKS)
def test_targets_on_a_full_disk_leave_the_previous_label_map(tmp_path, kind):
    write_inputs(tmp_path)
    with full_disk(kind, tmp_path / "disk") as (options, fill):
        assert run(tmp_path, targets("disk/l.mrc")).returncode == 0
        fill()
        before = checksums(tmp_path)
        result = run(tmp_path, targets("disk/l.mrc", "--radius", "4"), **options)
        assert_refused_for_lack_of_space(result, "targets", ["disk/l.mrc"], FULL_DISKS[kind])
        assert checksums(tmp_path) == before
        assert temporaries(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", FULL_DISKS)
def test_training_on_a_full_disk_keeps_the_last_checkpoint(tmp_path, kind):
    write_inputs(tmp_path)
    with full_disk(kind, tmp_path / "disk") as (options, fill):
        assert run(tmp_path, train("disk/run", "--epochs", "1")).returncode == 0
        fill()
        before = checksums(tmp_path)
        result = run(tmp_path, train("disk/run", "--epochs", "2"), **options)
        # The first file of epoch 2's checkpoint: its weights (HDF5 written whole, then saved).
        assert_refused_for_lack_of_space(
            result, "train", ["disk/run/checkpoint-0002.weights.h5"], FULL_DISKS[kind]
        )
        assert checksums(tmp_path) == before
        assert temporaries(tmp_path) == []
        # With space again, training goes on from epoch 1's checkpoint.
        (tmp_path / "disk" / "filler").unlink(missing_ok=True)
        result = run(tmp_path, train("disk/run", "--epochs", "2"))
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "disk" / "run" / "checkpoint-0002.weights.h5").exists()
