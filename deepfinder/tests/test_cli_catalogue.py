"""More bad and awkward conditions through the ``deepfinder`` command line (beside
test_cli_refusals.py): a full disk, read-only folders, the permissions of replaced files,
and the kinds of input that module has no case of (complex MRC modes, large extended headers,
tiny volumes, empty label maps, other samplings, spaces and accents along a whole chain).

Each case checks what the user sees (exit code, one line naming the file) and what is left on
disk (earlier outputs and inputs byte-identical, no temporary file). Most run ``cli.main`` in
this process; a new process where the case needs one (a file-size limit, a command without
root's power over permissions) and for the whole chain in folders with spaces and accents.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import resource
import subprocess
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from deepfinder.core.io import read_volume, write_volume
from deepfinder.core.tables import csv as particle_csv
from deepfinder.tests.permissions import without_override

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
def test_segmentation_on_a_full_disk_leaves_the_previous_maps(cli_process, tmp_path, weights, kind):
    write_inputs(tmp_path)
    model = copy_model(weights, tmp_path)
    with full_disk(kind, tmp_path / "disk") as (options, fill):
        first = cli_process(tmp_path, segment(model, "disk/l.mrc", "--scores", "disk/s.mrc"))
        assert first.returncode == 0, first.stderr
        fill()
        before = checksums(tmp_path)
        result = cli_process(tmp_path, segment(model, "disk/l.mrc", "--scores", "disk/s.mrc"), **options)
        outputs = ["disk/l.mrc", "disk/s_class1.mrc", "disk/s_class2.mrc", "disk/s_class0.mrc"]
        assert_refused_for_lack_of_space(result, "segment", outputs, FULL_DISKS[kind])
        assert checksums(tmp_path) == before
        assert temporaries(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", FULL_DISKS)
def test_targets_on_a_full_disk_leave_the_previous_label_map(cli_process, tmp_path, kind):
    write_inputs(tmp_path)
    with full_disk(kind, tmp_path / "disk") as (options, fill):
        assert cli_process(tmp_path, targets("disk/l.mrc")).returncode == 0
        fill()
        before = checksums(tmp_path)
        result = cli_process(tmp_path, targets("disk/l.mrc", "--radius", "4"), **options)
        assert_refused_for_lack_of_space(result, "targets", ["disk/l.mrc"], FULL_DISKS[kind])
        assert checksums(tmp_path) == before
        assert temporaries(tmp_path) == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", FULL_DISKS)
def test_training_on_a_full_disk_keeps_the_last_checkpoint(cli_process, tmp_path, kind):
    write_inputs(tmp_path)
    with full_disk(kind, tmp_path / "disk") as (options, fill):
        assert cli_process(tmp_path, train("disk/run", "--epochs", "1")).returncode == 0
        fill()
        before = checksums(tmp_path)
        result = cli_process(tmp_path, train("disk/run", "--epochs", "2"), **options)
        # The first file of epoch 2's checkpoint: its weights (HDF5 written whole, then saved).
        assert_refused_for_lack_of_space(
            result, "train", ["disk/run/checkpoint-0002.weights.h5"], FULL_DISKS[kind]
        )
        assert checksums(tmp_path) == before
        assert temporaries(tmp_path) == []
        # With space again, training goes on from epoch 1's checkpoint.
        (tmp_path / "disk" / "filler").unlink(missing_ok=True)
        result = cli_process(tmp_path, train("disk/run", "--epochs", "2"))
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "disk" / "run" / "checkpoint-0002.weights.h5").exists()


# --------------------------------------------------------------------------- permissions


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


@pytest.fixture
def umask_027():
    """A umask that keeps files from others, the one this process had restored after the test."""
    previous = os.umask(0o027)
    yield
    os.umask(previous)


@pytest.mark.usefixtures("umask_027")
def test_replaced_outputs_keep_their_permissions_and_new_ones_get_the_umask(cli_in_process, tmp_path):
    write_inputs(tmp_path)
    assert cli_in_process(tmp_path, targets("l.mrc")).returncode == 0
    cluster = ["cluster", "--labels", "labels.mrc", "--output", "p.csv", "--radius"]
    assert cli_in_process(tmp_path, [*cluster, "3"]).returncode == 0
    assert mode_of(tmp_path / "l.mrc") == mode_of(tmp_path / "p.csv") == 0o640
    (tmp_path / "l.mrc").chmod(0o664)  # shared with a group
    (tmp_path / "p.csv").chmod(0o444)  # kept from edits
    earlier = checksums(tmp_path)
    assert cli_in_process(tmp_path, targets("l.mrc", "--radius", "4")).returncode == 0
    assert cli_in_process(tmp_path, [*cluster, "2"]).returncode == 0
    assert checksums(tmp_path)["l.mrc"] != earlier["l.mrc"]  # replaced...
    assert (mode_of(tmp_path / "l.mrc"), mode_of(tmp_path / "p.csv")) == (0o664, 0o444)  # ...with its modes


# --------------------------------------------------------------------------- read-only folders


def read_only_folder(parent: Path, files: dict[str, bytes]) -> Path:
    folder = parent / "read-only"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).write_bytes(content)
    folder.chmod(0o555)
    return folder


@pytest.mark.slow
def test_targets_into_a_read_only_folder_are_refused_and_the_earlier_map_stays(cli_process, tmp_path):
    prefix = without_override()
    write_inputs(tmp_path)
    read_only_folder(tmp_path, {"l.mrc": b"earlier label map"})
    before = checksums(tmp_path)
    result = cli_process(tmp_path, targets("read-only/l.mrc"), prefix)
    assert result.returncode == 2
    assert result.stderr == "deepfinder targets: error: read-only/l.mrc: Permission denied\n"
    assert checksums(tmp_path) == before
    assert temporaries(tmp_path) == []


@pytest.mark.slow
def test_segmentation_with_a_read_only_score_folder_leaves_the_earlier_maps(cli_process, tmp_path, weights):
    prefix = without_override()
    write_inputs(tmp_path)
    model = copy_model(weights, tmp_path)
    (tmp_path / "l.mrc").write_bytes(b"earlier label map")
    read_only_folder(tmp_path, {"s_class1.mrc": b"earlier score map"})
    before = checksums(tmp_path)
    result = cli_process(tmp_path, segment(model, "l.mrc", "--scores", "read-only/s.mrc"), prefix)
    assert result.returncode == 2
    assert result.stderr == "deepfinder segment: error: read-only/s_class1.mrc: Permission denied\n"
    assert checksums(tmp_path) == before
    assert temporaries(tmp_path) == []


# --------------------------------------------------------------------------- awkward inputs


def complex_tomogram(folder: Path) -> str:
    with mrcfile.new(folder / "fourier.mrc") as mrc:
        mrc.set_data(np.ones((16, 16, 16), np.complex64))
    return "fourier.mrc"


def extended_header_tomogram(folder: Path) -> str:
    """The tomogram with a 1 MiB extended header (as FEI/TFS software writes)."""
    with mrcfile.new(folder / "extended.mrc") as mrc:
        mrc.set_data(read_volume(folder / "tomo.mrc"))
        mrc.set_extended_header(np.zeros(1 << 20, dtype="V1"))
        mrc.voxel_size = VOXEL_SIZE
    return "extended.mrc"


def tiny_tomogram(folder: Path) -> str:
    write_volume(folder / "tiny.mrc", np.ones((1, 1, 1), np.float32), VOXEL_SIZE)
    return "tiny.mrc"


def small_tomogram(folder: Path) -> str:
    write_volume(folder / "small.mrc", np.random.default_rng(3).normal(size=(4, 4, 4)), VOXEL_SIZE)
    return "small.mrc"


def other_sampling(folder: Path) -> str:
    write_volume(folder / "labels20.mrc", read_volume(folder / "labels.mrc"), 2 * VOXEL_SIZE)
    return "labels20.mrc"


def empty_label_map(folder: Path) -> str:
    write_volume(folder / "empty.mrc", np.zeros(SHAPE, np.int8), VOXEL_SIZE)
    return "empty.mrc"


def small_score_maps(folder: Path) -> str:
    for k in (1, 2):
        write_volume(folder / f"s_class{k}.mrc", np.full((16, 16, 16), 0.5, np.float16), VOXEL_SIZE)
    return "s.mrc"


# (case, command line from the data folder, exit code, stderr, output file written)
AWKWARD = [
    (
        "complex MRC (mode 4)",
        lambda f: [
            "segment",
            "--tomogram",
            complex_tomogram(f),
            "--model",
            "m.weights.h5",
            "--labels",
            "l.mrc",
        ],
        2,
        "deepfinder segment: error: fourier.mrc: MRC mode 4 holds complex numbers (a Fourier transform), "
        "not a volume: give a volume of mode 0, 1, 2, 6 or 12\n",
        None,
    ),
    (
        "MRC with a 1 MiB extended header",
        lambda f: targets("l.mrc", "--tomogram", extended_header_tomogram(f)),
        0,
        "",
        "l.mrc",
    ),
    (
        "one-voxel tomogram",
        lambda f: targets("l.mrc", "--tomogram", tiny_tomogram(f)),
        2,
        "deepfinder targets: warning: 4 of 4 particles lie outside the volume (z, y, x) = (1, 1, 1) and were "
        "skipped; check the coordinates' units (voxels) and binning\n"
        "deepfinder targets: error: particles.csv: no particle lies in tiny.mrc (1, 1, 1) (x, y, z): "
        "check the coordinates' voxel size and tomogram id\n",
        None,
    ),
    (
        "tomogram too small to segment",
        lambda f: [
            "segment",
            "--tomogram",
            small_tomogram(f),
            "--model",
            "m.weights.h5",
            "--labels",
            "l.mrc",
        ],
        2,
        "deepfinder segment: error: Tomogram small.mrc: shape (4, 4, 4) is too small for tiles cropped by 4 "
        "voxels per side: its largest edge must be >= 9 voxels, or give a smaller crop\n",
        None,
    ),
    (
        "initial labels at another voxel size",
        lambda f: targets("l.mrc", "--initial-labels", other_sampling(f)),
        0,
        "deepfinder targets: warning: labels20.mrc has 20 A/voxel but tomo.mrc 10 A/voxel: "
        "are they on the same voxel grid?\n",
        "l.mrc",
    ),
    (
        "label map of background only",
        lambda f: [
            "cluster",
            "--labels",
            empty_label_map(f),
            "--radius",
            "3",
            "--min-size",
            "2",
            "--output",
            "p.csv",
        ],
        0,
        "deepfinder cluster: warning: empty.mrc holds background only: the particle table is empty\n",
        "p.csv",
    ),
    (
        "score maps of another segmentation",
        lambda f: (
            ["cluster", "--labels", "labels.mrc", "--radius", "3", "--scores", small_score_maps(f)]
            + ["--output", "p.csv"]
        ),
        2,
        "deepfinder cluster: error: s_class1.mrc has shape (16, 16, 16) but labels.mrc (32, 64, 64): "
        "give the --scores of the segmentation that wrote the label map\n",
        None,
    ),
    (
        "mask density without voxels above the threshold",
        lambda f: (
            ["targets", "--tomogram", "tomo.mrc", "--particles", "particles.csv", "--out", "l.mrc"]
            + ["--mask", "1:labels.mrc", "2:labels.mrc", "--mask-threshold", "5"]
        ),
        2,
        "deepfinder targets: error: labels.mrc: No voxel of the density is above the threshold 5.0 "
        "(density range 0 .. 2): lower it\n",
        None,
    ),
]


@pytest.mark.parametrize(
    "make_argv, code, stderr, output", [c[1:] for c in AWKWARD], ids=[c[0] for c in AWKWARD]
)
def test_an_awkward_input_is_handled_and_named(cli_in_process, tmp_path, make_argv, code, stderr, output):
    write_inputs(tmp_path)
    argv = make_argv(tmp_path)
    before = checksums(tmp_path)
    result = cli_in_process(tmp_path, argv)
    assert (result.returncode, result.stderr) == (code, stderr)
    after = checksums(tmp_path)
    assert {name: after[name] for name in before} == before
    assert sorted(set(after) - set(before)) == ([output] if output else [])


def test_a_large_extended_header_gives_the_same_targets(cli_in_process, tmp_path):
    write_inputs(tmp_path)
    assert cli_in_process(tmp_path, targets("plain.mrc")).returncode == 0
    assert (
        cli_in_process(
            tmp_path, targets("from_extended.mrc", "--tomogram", extended_header_tomogram(tmp_path))
        ).returncode
        == 0
    )
    assert np.array_equal(read_volume(tmp_path / "plain.mrc"), read_volume(tmp_path / "from_extended.mrc"))


def test_a_label_map_of_background_only_gives_an_empty_table(cli_in_process, tmp_path):
    write_inputs(tmp_path)
    argv = ["cluster", "--labels", empty_label_map(tmp_path), "--radius", "3", "--output", "p.csv"]
    assert cli_in_process(tmp_path, argv).returncode == 0
    assert len(particle_csv.read(tmp_path / "p.csv").particles) == 0


@pytest.mark.slow
def test_a_whole_chain_in_folders_with_spaces_and_accents(cli_process, tmp_path, weights):
    folder = tmp_path / "données de l'été"
    folder.mkdir()
    write_inputs(folder)
    (folder / "tomo.mrc").rename(folder / "tomo ü.mrc")
    model = copy_model(weights, folder)
    before = checksums(folder)
    commands = [
        [
            "targets",
            "--tomogram",
            "tomo ü.mrc",
            "--particles",
            "particles.csv",
            "--radius",
            "3",
            "--out",
            "cibles à/l é.mrc",
        ],
        [
            "segment",
            "--tomogram",
            "tomo ü.mrc",
            "--model",
            model,
            "--labels",
            "sortie ß/l é.mrc",
            "--patch-size",
            "32",
        ],
        # The targets, not the untrained model's labels: those cover the tomogram, and clustering
        # them takes minutes.
        ["cluster", "--labels", "cibles à/l é.mrc", "--radius", "3", "--output", "sortie ß/p ñ.csv"],
    ]
    for argv in commands:
        result = cli_process(folder, argv)
        assert (result.returncode, result.stderr) == (0, ""), result.stderr
    assert read_volume(folder / "cibles à" / "l é.mrc")[8, 8, 8] == 1
    assert read_volume(folder / "sortie ß" / "l é.mrc").shape == SHAPE
    assert set(particle_csv.read(folder / "sortie ß" / "p ñ.csv").particles.tomo) == {"l é"}
    after = checksums(folder)
    assert {name: after[name] for name in before} == before
