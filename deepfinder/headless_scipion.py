"""A private, headless Scipion configuration for the tests and the demo.

Scipion reads its configuration from environment variables when pyworkflow is
first imported, so :func:`configure` must run before that. Everything goes
under one folder: a user's global Scipion configuration is never touched.

Importing the ``deepfinder`` package imports pyworkflow (the Plugin class), so
callers run this file without importing the package::

    configure = runpy.run_path("deepfinder/headless_scipion.py")["configure"]

which is why it imports nothing but the standard library.
"""

import os
import sys
from pathlib import Path

# The queue section is a SLURM cluster's (docs/gpus-and-clusters.md shows it): runs stay local unless their
# form says "Use a queue engine? Yes". QUEUE_FOR_JOBS = Y sends each step's command as its own
# job instead of the whole run; JOB_GRES asks SLURM for GPUs (e.g. gpu:1 on a GPU partition).
HOSTS_CONF = """[localhost]
PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d --map-by node %_(COMMAND)s
NAME = SLURM
MANDATORY = 0
SUBMIT_COMMAND = sbatch %_(JOB_SCRIPT)s
CANCEL_COMMAND = scancel %_(JOB_ID)s
CHECK_COMMAND = squeue -h -o %%T -j %_(JOB_ID)s
JOB_DONE_REGEX = COMPLETED|COMPLETING|CANCELLED|FAILED|TIMEOUT|OUT_OF_MEMORY|NODE_FAIL|PREEMPTED
SUBMIT_TEMPLATE = #!/bin/bash
    #SBATCH --job-name=%_(JOB_NAME)s
    #SBATCH --partition=%_(JOB_QUEUE)s
    #SBATCH --output=%_(JOB_LOGS)s.out
    #SBATCH --error=%_(JOB_LOGS)s.err
    #SBATCH --export=ALL
    #SBATCH --ntasks=%_(JOB_NODES)d
    #SBATCH --cpus-per-task=%_(JOB_THREADS)d
    #SBATCH --mem=%_(JOB_MEMORY)s
    #SBATCH --time=%_(JOB_TIME)s:00:00
    #SBATCH --gres=%_(JOB_GRES)s
    echo "SLURM job $SLURM_JOB_ID on $(hostname), CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"
    %_(JOB_COMMAND)s
QUEUES = {
    "debug": [
        ["JOB_MEMORY", "4096", "Memory (MB)", "Memory of each job, in megabytes"],
        ["JOB_TIME", "24", "Time (hours)", "Time limit of each job, in hours"],
        ["JOB_GRES", "none", "GPUs (SLURM gres)", "gpu:1 for one GPU per job on a GPU partition"],
        ["QUEUE_FOR_JOBS", "N", "One job per step?", "Y: each step is its own job (segment, cluster)"]
    ]}
QUEUES_DEFAULT = {"JOB_GRES": "none"}
"""


def configure(root: str | os.PathLike) -> Path:
    """Point Scipion at ``root`` (created if needed) and return it."""
    if "pyworkflow" in sys.modules:
        raise RuntimeError("configure() must run before pyworkflow is imported")
    root = Path(root).resolve()
    config = root / "config"
    config.mkdir(parents=True, exist_ok=True)
    hosts = config / "hosts.conf"
    hosts.write_text(HOSTS_CONF)
    os.environ.update(
        {
            "SCIPION_HOME": str(root),
            "SCIPION_USER_DATA": str(root / "ScipionUserData"),
            "SCIPION_TESTS": str(root / "tests"),
            "SCIPION_HOSTS": str(hosts),
            "SCIPION_DOMAIN": "pwem",
            "SCIPION_PYTHON": sys.executable,
            "SCIPION_TEST_NOSYNC": "1",
            "SCIPION_STEPS_CHECK_SEC": "1",
            "SCIPION_DONT_INSTALL_BINARIES": "1",
            "MPLBACKEND": "Agg",
        }
    )
    return root
