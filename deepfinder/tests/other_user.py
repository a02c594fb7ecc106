"""Running the command line without root's rights, for the cases root is not refused.

Root writes into read-only folders, and CI runs as root: there, such tests run the command
as the user nobody through ``setpriv`` (util-linux) or ``runuser``. That user must reach the
files: create them in :func:`reachable_folder`, not in pytest's ``tmp_path`` (root's, mode 700).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

NOBODY = 65534


def without_root() -> list[str]:
    """The words to put before a command so that it runs without root's rights ([] for a user).

    Skips the test when running as root with neither ``setpriv`` nor ``runuser``, or when the
    user nobody cannot run this Python environment (a checkout only root can read).
    """
    if os.geteuid() != 0:
        return []
    if setpriv := shutil.which("setpriv"):
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    elif runuser := shutil.which("runuser"):
        prefix = [runuser, "-u", "nobody", "--"]
    else:
        pytest.skip("root writes into read-only folders, and neither setpriv nor runuser is here")
    try:
        subprocess.run(
            [*prefix, sys.executable, "-c", "import deepfinder.core.cli"],
            check=True,
            capture_output=True,
            timeout=120,
            cwd="/",
        )
    except subprocess.CalledProcessError as error:
        pytest.skip(f"the user nobody cannot run this Python environment: {error.stderr.decode()[-200:]}")
    return prefix


def reachable_folder() -> Iterator[Path]:
    """A fresh temporary folder that the user of :func:`without_root` owns; removed at the end."""
    folder = Path(tempfile.mkdtemp(prefix="deepfinder-test-"))
    os.chmod(folder, 0o755)
    if os.geteuid() == 0:
        os.chown(folder, NOBODY, NOBODY)
    try:
        yield folder
    finally:
        for path in [folder, *folder.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(path.stat().st_mode | stat.S_IWUSR | stat.S_IXUSR)
        shutil.rmtree(folder)
