"""The options every engine process has: which GPUs and how many CPU threads it may use."""

import subprocess
import sys

import pytest


def _deepfinder(*arguments, tmp_path):
    return subprocess.run(
        [sys.executable, "-m", "deepfinder.core.cli", "simulate", "--out", tmp_path / "data", *arguments],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_a_run_says_when_where_and_on_which_gpus_it_started(tmp_path):
    result = _deepfinder("--gpus", "1", "3", "--threads", "1", "--tomograms", "1", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    started = [line for line in result.stdout.splitlines() if "deepfinder simulate: started" in line]
    assert len(started) == 1 and "CUDA_VISIBLE_DEVICES=1,3" in started[0] and " pid " in started[0]
    assert "deepfinder simulate: finished" in result.stdout


def test_gpus_none_hides_every_gpu(tmp_path):
    result = _deepfinder("--gpus", "none", "--tomograms", "1", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    started = next(line for line in result.stdout.splitlines() if "deepfinder simulate: started" in line)
    assert started.endswith("CUDA_VISIBLE_DEVICES="), started


@pytest.mark.parametrize(
    "option, message",
    [
        (["--gpus", "first"], "argument --gpus: 'first' is not a GPU number (0, 1, ...) or 'none'"),
        (["--threads", "0"], "--threads: 0 is not a number of threads (1, 2, ...)"),
    ],
)
def test_a_wrong_gpu_or_thread_count_is_refused_in_one_line(tmp_path, option, message):
    result = _deepfinder(*option, tmp_path=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().endswith(message), result.stderr
    assert not (tmp_path / "data").exists()
