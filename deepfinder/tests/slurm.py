"""Scipion runs on a SLURM cluster, for the queue tests and benchmarks/bench_queue.py.

The queue is the one of the hosts.conf that ``deepfinder/headless_scipion.py`` writes; as root,
``bash scripts/start_slurm.sh`` starts a single-node cluster that has it.
"""

import os
import re
import shutil
import subprocess
import time
import unittest
from pathlib import Path

QUEUE = "debug"  # the queue of the tests' hosts.conf, a partition of scripts/start_slurm.sh's cluster
RUN_TIMEOUT_S = 900
# The line the hosts.conf job template writes first into each job's output.
JOB_START = re.compile(r"^SLURM job (?P<id>\d+) on ", re.MULTILINE)


def require_slurm() -> None:
    """Skip (or, with DEEPFINDER_REQUIRE_SLURM=1, fail) unless a SLURM cluster answers here."""
    if shutil.which("sbatch") is None:
        problem = "sbatch is absent"
    elif subprocess.run(["sinfo", "-h"], capture_output=True).returncode != 0:
        problem = "sbatch is installed but the cluster does not answer sinfo"
    else:
        return
    reason = f"SLURM queue tests need a SLURM cluster: {problem} (as root: bash scripts/start_slurm.sh)"
    if os.environ.get("DEEPFINDER_REQUIRE_SLURM") == "1":
        raise AssertionError(f"{reason}; DEEPFINDER_REQUIRE_SLURM=1 forbids skipping")
    raise unittest.SkipTest(reason)


def send_to_queue(project, protocol, one_job_per_step: bool = False, **queue_values) -> None:
    """Set a protocol as the form does for "Use a queue engine? Yes" and the queue dialog's values."""
    queues = project.getHostConfig(protocol.getHostName()).getQueueSystem().getQueues()
    values = {name: default for name, default, *_ in queues[QUEUE]}
    values.update(queue_values, QUEUE_FOR_JOBS="Y" if one_job_per_step else "N")
    protocol._useQueue.set(True)
    protocol.setQueueParams([QUEUE, values])


def wait_until_done(project, protocol, timeout_s: float = RUN_TIMEOUT_S, poll_s: float = 1.0) -> None:
    """Refresh a launched protocol from its run database, as the GUI does, until it is no longer active."""
    deadline = time.monotonic() + timeout_s
    project._updateProtocol(protocol)
    while protocol.isActive():
        if time.monotonic() > deadline:
            raise AssertionError(f"{protocol.getRunName()} still {protocol.getStatus()} after {timeout_s} s")
        time.sleep(poll_s)
        project._updateProtocol(protocol)


def submitted_jobs(protocol) -> dict[str, str]:
    """The SLURM job id that ran each job script Scipion wrote for ``protocol`` (name -> id).

    Scipion writes the scripts in the run's logs/ folder; each job's first output line
    (from the hosts.conf template) names the job id SLURM gave it.
    """
    jobs = {}
    for script in sorted(Path(protocol._getLogsPath()).glob("*.job")):
        output = script.with_suffix(".out")
        started = JOB_START.search(output.read_text()) if output.exists() else None
        jobs[script.name] = started["id"] if started else None
    return jobs


def jobs_started_in(folder: str, states: str = "PENDING,RUNNING") -> list[tuple[str, Path]]:
    """(job id, job script) of each job submitted from ``folder`` (a project's) in one of ``states``."""
    listing = subprocess.run(
        ["squeue", "-h", "-t", states, "-o", "%i|%Z|%o"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split("|", 2) for line in listing.splitlines()]
    return [(job, Path(script)) for job, workdir, script in rows if workdir == folder]


def cancel_jobs_started_in(folder: str, grace_s: float = 30) -> None:
    """scancel every job submitted from ``folder`` still queued or running after ``grace_s`` seconds.

    A whole run's job reports the run finished shortly before its process ends: the grace
    lets such jobs complete instead of cancelling them in their last second.
    """
    deadline = time.monotonic() + grace_s
    while jobs_started_in(folder) and time.monotonic() < deadline:
        time.sleep(1)
    ids = [job for job, _ in jobs_started_in(folder)]
    if ids:
        subprocess.run(["scancel", *ids], check=False)
