"""Fixtures shared by the test modules: one untrained model, and the ``deepfinder`` command line
run in this process (fast) or in a new one (what a user's shell does)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

# The classes of the shared model: background and two particle classes.
N_CLASSES = 3

RunCli = Callable[..., subprocess.CompletedProcess]

# The longest module, by far: its training is about half of the whole suite on a 2-core CPU without
# bfloat16 instructions. Run first, so that with two workers (scripts/test.sh) the other one runs the
# rest of the suite meanwhile.
FIRST_MODULES = ("test_protocols_pipeline.py",)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the tests of ``FIRST_MODULES`` first, the others in their order."""
    items.sort(key=lambda item: item.path.name not in FIRST_MODULES)


@pytest.fixture(scope="session")
def model():
    """An untrained U-net of ``N_CLASSES`` classes, the same weights in every run (seed 0)."""
    import keras

    from deepfinder.core.model import build_unet

    keras.utils.set_random_seed(0)
    return build_unet(N_CLASSES)


@pytest.fixture(scope="session")
def weights(model, tmp_path_factory) -> Path:
    """``model`` saved once for the whole run: ``unet.weights.h5`` beside its ``unet.json``."""
    from deepfinder.core.model import save_model

    return save_model(model, tmp_path_factory.mktemp("model") / "unet.weights.h5", {})


@pytest.fixture
def cli_in_process(monkeypatch, capsys) -> RunCli:
    """``run(folder, argv)``: ``deepfinder <argv>`` in ``folder`` through ``cli.main`` in this process.

    Returns what a process would: the exit code, and what was printed on stdout and stderr.
    The environment variables the command sets (GPUs, threads, TensorFlow's log level) are
    restored after each call, so that one test's command does not change the next one's.
    """
    from deepfinder.core import cli

    def run(folder: Path, argv: list[str]) -> subprocess.CompletedProcess:
        monkeypatch.chdir(folder)
        capsys.readouterr()
        environment = dict(os.environ)
        try:
            cli.main(argv)
            code = 0
        except SystemExit as exit_:
            code = exit_.code or 0
        finally:
            os.environ.clear()
            os.environ.update(environment)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(["deepfinder", *argv], code, out, err)

    return run


@pytest.fixture
def cli_process() -> RunCli:
    """``run(folder, argv, prefix=(), **options)``: ``deepfinder <argv>`` in ``folder`` in a new
    process, after the words of ``prefix`` (e.g. ``setpriv ...``); ``options`` go to
    :func:`subprocess.run` (e.g. ``preexec_fn``)."""

    def run(folder: Path, argv: list[str], prefix=(), **options) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*prefix, sys.executable, "-m", "deepfinder.core.cli", *argv],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=600,
            **options,
        )

    return run
