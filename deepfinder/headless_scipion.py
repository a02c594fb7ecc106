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

HOSTS_CONF = """[localhost]
PARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d --map-by node %_(COMMAND)s
NAME = SCIPION_HEADLESS
MANDATORY = False
SUBMIT_COMMAND =
CANCEL_COMMAND =
CHECK_COMMAND =
SUBMIT_TEMPLATE =
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
