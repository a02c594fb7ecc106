"""Training folders know their data: resuming with other data or settings is refused, a kill at
any moment resumes with a complete history, and an unwritable output folder is refused before
any work."""

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from deepfinder.core.checkpoints import CHECKPOINT_STATE, TrainingFolderError, last_checkpoint
from deepfinder.core.cli import main
from deepfinder.core.io import write_volume
from deepfinder.core.model import load_model
from deepfinder.core.tables import csv as particle_csv
from deepfinder.core.train import train
from deepfinder.tests.permissions import without_override
from deepfinder.tests.test_core_train import blob_tomogram, fast, train_command

pytestmark = pytest.mark.filterwarnings("ignore:Gimbal lock")  # identity rotations written as ZXZ angles

SETTINGS = fast(epochs=1, steps_per_epoch=2, validation_steps=1)
REFUSAL_END = (
    "use another output folder, or start afresh with --restart (resume=False in Python), "
    "which replaces that run"
)


def checksums(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def epochs_of(rows) -> list[int]:
    return [row["epoch"] for row in rows]


def history(folder: Path) -> list[dict]:
    return json.loads((folder / "history.json").read_text())


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """Two tomograms of the same shape (a and b), each with its label map and particle CSV."""
    folder = tmp_path_factory.mktemp("project")
    files = {}
    for name, seed in (("a", 1), ("b", 2)):
        tomogram, label_map, table = blob_tomogram(folder, name, seed)
        files[name] = (tomogram, label_map, particle_csv.write(folder / f"{name}.csv", table), table)
    return folder, files


def run_cli(arguments, capsys) -> tuple[int, str, str]:
    """Exit code, standard output and standard error of a ``deepfinder`` command line."""
    try:
        main(arguments)
        code = 0
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained_on_a(project, tmp_path_factory):
    """A finished one-epoch training of tomogram a, through the command line."""
    _, files = project
    out = tmp_path_factory.mktemp("trained") / "model"
    main(train_command(files["a"], out, "--epochs", "1"))
    return out


def copy_of(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / folder.name))


@pytest.mark.parametrize("epochs", ["1", "2"])
def test_other_tomograms_are_refused_and_the_run_left_untouched(
    project, trained_on_a, tmp_path, capsys, epochs
):
    folder, files = project
    out = copy_of(trained_on_a, tmp_path)
    before, inputs = checksums(out), checksums(folder)
    code, printed, error = run_cli(train_command(files["b"], out, "--epochs", epochs), capsys)
    (a, a_labels, *_), (b, b_labels, *_) = files["a"], files["b"]
    assert code == 2 and "Best model" not in printed
    assert error == (
        f"deepfinder train: error: {out} holds a training of other data or settings "
        f"(training tomogram 1 {b} is not {a}; training label map 1 {b_labels} is not {a_labels}; "
        f"the particles of training tomogram 1 have changed): {REFUSAL_END}\n"
    )
    assert checksums(out) == before and checksums(folder) == inputs


def test_a_finished_run_says_so_then_continues_with_more_epochs(project, trained_on_a, tmp_path, capsys):
    _, files = project
    out = copy_of(trained_on_a, tmp_path)
    before = checksums(out)
    code, printed, _ = run_cli(train_command(files["a"], out, "--epochs", "1"), capsys)
    assert code == 0
    assert printed.startswith(
        f"{out} already holds this training up to epoch 1 (1 asked for): nothing to train "
        "(ask for more epochs to continue it)\n"
    )
    assert checksums(out) == before

    first = history(out)
    code, _, _ = run_cli(train_command(files["a"], out, "--epochs", "2", "--learning-rate", "1e-3"), capsys)
    assert code == 0
    rows = history(out)
    assert epochs_of(rows) == [1, 2] and rows[0] == first[0] and rows[1]["learning_rate"] == 1e-3
    assert last_checkpoint(out).name == "checkpoint-0002.weights.h5"


def test_a_moved_project_resumes(project, trained_on_a, tmp_path, capsys):
    """Inputs are known by their content: copied elsewhere (new paths and times) they resume."""
    folder, files = project
    moved = Path(shutil.copytree(folder, tmp_path / "moved"))
    out = copy_of(trained_on_a, moved)
    moved_files = tuple(moved / Path(path).name for path in files["a"][:3]) + (None,)
    code, _, _ = run_cli(train_command(moved_files, out, "--epochs", "2"), capsys)
    assert code == 0 and epochs_of(history(out)) == [1, 2]


def test_a_training_of_an_earlier_version_continues_with_the_settings_added_since(
    project, trained_on_a, tmp_path, capsys
):
    """A checkpoint made before the patches' rotations were a setting turned them about the tilt
    axis only: it continues with that value, and names it when another is asked for."""
    _, files = project
    out = copy_of(trained_on_a, tmp_path)
    state_file = out / CHECKPOINT_STATE
    state = json.loads(state_file.read_text())
    for added in ("rotations", "added_noise"):
        del state["fingerprint"]["settings"][added]
    state_file.write_text(json.dumps(state))
    code, _, error = run_cli(
        train_command(files["a"], out, "--epochs", "2", "--rotations", "three_axes"), capsys
    )
    assert code == 2 and "rotations 'three_axes' (the checkpoint's: 'tilt_axis')" in error
    code, _, _ = run_cli(train_command(files["a"], out, "--epochs", "2", "--rotations", "tilt_axis"), capsys)
    assert code == 0 and epochs_of(history(out)) == [1, 2]


def test_restart_starts_afresh(project, trained_on_a, tmp_path, capsys):
    _, files = project
    out = copy_of(trained_on_a, tmp_path)
    code, printed, _ = run_cli(train_command(files["b"], out, "--epochs", "1", "--restart"), capsys)
    assert code == 0 and printed == f"Best model: {out / 'best.weights.h5'}\n"
    fresh = tmp_path / "fresh"
    run_cli(train_command(files["b"], fresh, "--epochs", "1"), capsys)
    np.testing.assert_allclose(history(out)[0]["train_loss"], history(fresh)[0]["train_loss"], rtol=1e-3)
    assert sorted(checksums(out)) == sorted(checksums(fresh))
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["fingerprint"]["training"][0]["tomogram"] == str(files["b"][0])


@pytest.fixture(scope="module")
def run_of_a(project, tmp_path_factory):
    """A finished one-epoch training of tomogram a, through the engine."""
    _, files = project
    tomogram, label_map, _, table = files["a"]
    out = tmp_path_factory.mktemp("engine") / "run"
    train([tomogram], [label_map], [table], out, 2, SETTINGS, validation_fraction=0.3)
    return out


def engine_inputs(files) -> dict:
    tomogram, label_map, _, table = files
    return dict(tomograms=[tomogram], label_maps=[label_map], particles=[table], n_classes=2)


@pytest.mark.parametrize(
    "change, difference",
    [
        (
            dict(settings=fast(epochs=2, steps_per_epoch=2, validation_steps=1, batch_size=2)),
            "batch_size 2 (the checkpoint's: 4)",
        ),
        (
            dict(settings=fast(epochs=2, steps_per_epoch=2, validation_steps=1, loss="cross_entropy")),
            "loss 'cross_entropy' (the checkpoint's: 'dice')",
        ),
        (
            dict(settings=fast(epochs=2, steps_per_epoch=2, validation_steps=1, seed=3)),
            "seed 3 (the checkpoint's: 0)",
        ),
        (
            dict(class_names=["background", "ribosome"]),
            "class_names ['background', 'ribosome'] (the checkpoint's: ['background', 'class 1'])",
        ),
        (dict(validation_fraction=0.5), "validation_fraction 0.5 (the checkpoint's: 0.3)"),
        (dict(voxel_size=10.0), "voxel_size 10.0 (the checkpoint's: 1.0)"),
    ],
)
def test_settings_that_belong_to_the_run_are_refused(project, run_of_a, tmp_path, change, difference):
    _, files = project
    out = copy_of(run_of_a, tmp_path)
    before = checksums(out)
    arguments = {**engine_inputs(files["a"]), "settings": SETTINGS, "validation_fraction": 0.3, **change}
    with pytest.raises(TrainingFolderError) as refusal:
        train(**arguments, out_dir=out)
    assert (
        str(refusal.value)
        == f"{out} holds a training of other data or settings ({difference}): {REFUSAL_END}"
    )
    assert checksums(out) == before


def test_a_tomogram_changed_in_place_is_refused(project, run_of_a, tmp_path):
    folder, files = project
    changed = Path(shutil.copytree(folder, tmp_path / "data"))
    tomogram = changed / "a.mrc"
    write_volume(tomogram, np.zeros((48, 48, 48), np.float32) + np.arange(48, dtype=np.float32))
    out = tmp_path / "run"
    train(
        **{**engine_inputs(files["a"]), "tomograms": [tomogram]},
        out_dir=out,
        settings=SETTINGS,
        validation_fraction=0.3,
    )
    write_volume(
        tomogram, np.zeros((48, 48, 48), np.float32) + np.arange(48, dtype=np.float32)[:, None, None]
    )
    with pytest.raises(TrainingFolderError, match=f"training tomogram 1 {tomogram} has changed"):
        train(
            **{**engine_inputs(files["a"]), "tomograms": [tomogram]},
            out_dir=out,
            settings=fast(epochs=2, steps_per_epoch=2, validation_steps=1),
            validation_fraction=0.3,
        )


def test_kill_between_checkpoint_and_history_loses_no_row(project, tmp_path):
    """The state a kill after epoch 2's checkpoint and before its history.json leaves."""
    _, files = project
    out = tmp_path / "run"
    after_first = tmp_path / "history1.json"

    def keep_history(epoch, row):
        if epoch == 1:
            shutil.copy(out / "history.json", after_first)

    two_epochs = fast(epochs=2, steps_per_epoch=2, validation_steps=1)
    train(
        **engine_inputs(files["a"]),
        out_dir=out,
        settings=two_epochs,
        validation_fraction=0.3,
        on_epoch_end=keep_history,
    )
    complete = history(out)
    shutil.copy(after_first, out / "history.json")
    assert epochs_of(history(out)) == [1]

    ran = []
    train(
        **engine_inputs(files["a"]),
        out_dir=out,
        settings=two_epochs,
        validation_fraction=0.3,
        on_epoch_end=lambda e, r: ran.append(e),
    )
    assert ran == [] and history(out) == complete

    shutil.copy(after_first, out / "history.json")
    train(
        **engine_inputs(files["a"]),
        out_dir=out,
        settings=fast(epochs=3, steps_per_epoch=2, validation_steps=1),
        validation_fraction=0.3,
        on_epoch_end=lambda e, r: ran.append(e),
    )
    assert ran == [3] and epochs_of(history(out)) == [1, 2, 3] and history(out)[:2] == complete


def test_kill_while_writing_a_checkpoint_redoes_that_epoch_once(project, tmp_path):
    """The state a kill while epoch 2's checkpoint is being written leaves: epoch 1's files, a
    truncated weights file and state of epoch 2, and the best model of epoch 2."""
    _, files = project
    out, after_first = tmp_path / "run", tmp_path / "after_first"

    def keep_folder(epoch, row):
        if epoch == 1:
            shutil.copytree(out, after_first)

    two_epochs = fast(
        epochs=2, steps_per_epoch=2, validation_steps=1, learning_rate=1e-3, loss="cross_entropy"
    )
    inputs = dict(**engine_inputs(files["a"]), settings=two_epochs, validation_fraction=0.3)
    train(**inputs, out_dir=out, on_epoch_end=keep_folder)

    crashed = Path(shutil.copytree(after_first, tmp_path / "crashed"))
    weights = (out / "checkpoint-0002.weights.h5").read_bytes()
    (crashed / "checkpoint-0002.weights.h5").write_bytes(weights[: len(weights) // 2])
    # The state being replaced, as io.atomic_output names it, by a process that no longer runs.
    (crashed / ".checkpoint.json.tmp-999999999").write_text((out / "checkpoint.json").read_text()[:100])
    for name in ("best.weights.h5", "best.json"):
        shutil.copy(out / name, crashed / name)

    ran = []
    train(**inputs, out_dir=crashed, on_epoch_end=lambda e, r: ran.append(e))
    rows = history(crashed)
    assert ran == [2] and epochs_of(rows) == [1, 2]
    np.testing.assert_allclose(
        [r["train_loss"] for r in rows], [r["train_loss"] for r in history(out)], rtol=1e-3
    )
    assert sorted(p.name for p in crashed.glob("checkpoint*")) == [
        "checkpoint-0002.json",
        "checkpoint-0002.optimizer.npz",
        "checkpoint-0002.weights.h5",
        "checkpoint.json",
    ]
    assert not list(crashed.glob(".*.tmp-*"))
    load_model(last_checkpoint(crashed))


@pytest.mark.slow
def test_killed_at_random_moments_the_folder_stays_whole_and_resumes(project, tmp_path):
    """SIGKILL a training at random moments: each time, checkpoint.json names whole files and
    holds the history of its epochs, history.json is that history or one row short, and
    resuming completes the run with every epoch once."""
    _, files = project
    out = tmp_path / "model"
    arguments = [
        sys.executable,
        "-m",
        "deepfinder.core.cli",
        *train_command(files["a"], out, "--epochs", "6"),
    ]
    arguments[arguments.index("--steps-per-epoch") + 1] = "8"  # about a second per epoch
    state_file = out / "checkpoint.json"
    rng = np.random.default_rng(0)
    for _ in range(3):
        last_write = state_file.stat().st_mtime_ns if state_file.exists() else None
        process = subprocess.Popen(arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 300
        while (
            process.poll() is None
            and (state_file.stat().st_mtime_ns if state_file.exists() else None) == last_write
        ):
            assert time.time() < deadline, "the training wrote no checkpoint"
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 1.5))
        process.send_signal(signal.SIGKILL)
        process.wait()

        state = json.loads(state_file.read_text())
        assert epochs_of(state["history"]) == list(range(1, state["epoch"] + 1))
        assert history(out) in (state["history"], state["history"][:-1])
        print(f"killed after epoch {state['epoch']}, files {sorted(path.name for path in out.iterdir())}")
        load_model(out / state["weights"])
        load_model(out / "best.weights.h5")
        assert (out / state["optimizer_state"]).exists()

    subprocess.run(arguments, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert epochs_of(history(out)) == [1, 2, 3, 4, 5, 6]
    assert json.loads(state_file.read_text())["history"] == history(out)
    assert sorted(path.name for path in out.iterdir()) == [
        "best.json",
        "best.weights.h5",
        "checkpoint-0006.json",
        "checkpoint-0006.optimizer.npz",
        "checkpoint-0006.weights.h5",
        "checkpoint.json",
        "history.json",
    ]


@pytest.mark.parametrize("case", ["file in the way", "file in the path", "read-only folder"])
def test_unwritable_output_is_refused_before_any_work(project, tmp_path, case):
    _, files = project
    blocker = tmp_path / "model"
    prefix = []
    if case == "read-only folder":
        prefix = without_override()  # as root, file permissions hold only without the override
        blocker.mkdir()
        blocker.chmod(0o555)
        out, reason = blocker, "Cannot write to the output folder {out}: Permission denied"
    else:
        blocker.write_text("not a folder")
        if case == "file in the way":
            out, reason = blocker, "Output folder {out} is a file: give a folder"
        else:
            out, reason = blocker / "run", "Cannot write to the output folder {out}: Not a directory"
    before = checksums(tmp_path)
    # The command line, reporting at exit whether TensorFlow was loaded (it is, to build the model).
    script = (
        "import sys\nfrom deepfinder.core.cli import main\n"
        "try:\n    main(sys.argv[1:])\nfinally:\n    print('tensorflow' in sys.modules)"
    )
    finished = subprocess.run(
        [*prefix, sys.executable, "-c", script, *train_command(files["a"], out, "--steps-per-epoch", "2000")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert finished.returncode == 2
    assert finished.stderr == f"deepfinder train: error: {reason.format(out=out)}\n"
    assert finished.stdout == "False\n"
    assert checksums(tmp_path) == before
