"""What Scipion's SLURM queue costs: per job, and per segmentation step sent to the queue.

1. A trivial job (``true``) submitted ``--jobs`` times with ``sbatch``: the time of the
   ``sbatch`` call, and from the call until ``squeue`` no longer lists the job (polled
   every 50 ms): SLURM's own overhead per job.
2. The segment protocol on the tiny dataset's 3 tomograms (96 x 96 x 64 voxels, model
   trained for 2 x 3 steps first), in a headless Scipion project with the tests'
   hosts.conf: run locally, as one SLURM job for the whole run, and with one SLURM job
   per step. For each: the run's wall time (launch to finished), the mean time of a
   segmentation step and the number of job scripts Scipion wrote.

Needs a SLURM cluster (as root: ``bash scripts/start_slurm.sh``).
Usage: python benchmarks/bench_queue.py [--jobs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import runpy
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
QUEUE = "debug"
POLL_S = 0.05


def trivial_job_times(n_jobs: int, folder: Path) -> tuple[list[float], list[float]]:
    """(sbatch call, submit to gone from squeue) in seconds, for ``n_jobs`` jobs run one after another."""
    script = folder / "true.sh"
    script.write_text("#!/bin/bash\ntrue\n")
    calls, totals = [], []
    for _ in range(n_jobs):
        start = time.monotonic()
        submitted = subprocess.run(
            ["sbatch", "--parsable", "-o", "/dev/null", str(script)],
            capture_output=True,
            text=True,
            check=True,
        )
        calls.append(time.monotonic() - start)
        job = submitted.stdout.strip().split(";")[0]
        while subprocess.run(["squeue", "-h", "-j", job], capture_output=True, text=True).stdout.strip():
            time.sleep(POLL_S)
        totals.append(time.monotonic() - start)
    return calls, totals


def segmentation_runs(project_name: str) -> list[tuple[str, float, float, int]]:
    """(variant, run wall time, mean segmentation step time, job scripts) for each way to run it."""
    from deepfinder.protocols import DeepFinderProtSegment, DeepFinderProtTrain
    from deepfinder.tests import TINY
    from deepfinder.tests.slurm import send_to_queue, wait_until_done
    from deepfinder.workflow import create_project, launch, sphere_targets

    project = create_project(project_name)
    tomograms, coordinates, targets = sphere_targets(project, TINY, "tomo_00?.mrc")
    train = launch(
        project,
        DeepFinderProtTrain,
        "train",
        inputLabelMaps=targets.labelMaps,
        inputCoordinates=coordinates,
        patchSize=24,
        shiftVoxels=6,
        batchSize=2,
        epochs=2,
        stepsPerEpoch=3,
        validationSteps=1,
    )
    results = []
    for variant, queued, per_step in [
        ("local (no queue)", False, False),
        ("queue, one job for the run", True, False),
        ("queue, one job per step", True, True),
    ]:
        segment = project.newProtocol(
            DeepFinderProtSegment, objLabel=variant, inputTomograms=tomograms, inputModel=train.model
        )
        if queued:
            send_to_queue(project, segment, one_job_per_step=per_step)
        start = time.monotonic()
        project.launchProtocol(segment, wait=not queued or per_step)
        wait_until_done(project, segment, poll_s=0.2)
        wall = time.monotonic() - start
        if not segment.isFinished():
            raise RuntimeError(f"{variant}: {segment.getStatus()} {segment.getErrorMessage()}")
        steps = [s for s in segment.loadSteps() if s.funcName.get() == "segmentStep"]
        step_s = statistics.mean(s.getElapsedTime().total_seconds() for s in steps)
        scripts = len(list(Path(segment._getLogsPath()).glob("*.job")))
        results.append((variant, wall, step_s, scripts))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=10, help="trivial jobs to time")
    parser.add_argument("--out", type=Path, default=None, help="Scipion home (default: a temporary folder)")
    args = parser.parse_args()
    home = args.out or Path(tempfile.mkdtemp(prefix="bench-queue-"))
    # Before pyworkflow is imported (run from its file: importing it imports pyworkflow first).
    runpy.run_path(str(REPO / "deepfinder" / "headless_scipion.py"))["configure"](home)

    calls, totals = trivial_job_times(args.jobs, home)
    print(f"Trivial job x {args.jobs} (sbatch; poll squeue every {POLL_S * 1000:.0f} ms):")
    print(f"  sbatch call        median {statistics.median(calls):.3f} s  max {max(calls):.3f} s")
    low, high = min(totals), max(totals)
    print(f"  submit to finished median {statistics.median(totals):.2f} s  min {low:.2f} s  max {high:.2f} s")

    print("Segment protocol, 3 tiny tomograms (96 x 96 x 64), 1 thread:")
    print(f"  {'variant':<28} {'run wall time':>14} {'mean step':>10} {'job scripts':>12}")
    for variant, wall, step_s, scripts in segmentation_runs("bench_queue"):
        print(f"  {variant:<28} {wall:>12.1f} s {step_s:>8.1f} s {scripts:>12d}")


if __name__ == "__main__":
    main()
