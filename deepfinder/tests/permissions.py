"""Running the command line without root's power over file permissions.

Root writes into read-only folders, and CI runs as root: there, tests of read-only folders run
the command through ``setpriv`` (util-linux) with the capabilities that override file
permissions (``CAP_DAC_OVERRIDE``, ``CAP_DAC_READ_SEARCH``) out of its bounding set. The
command stays root, so it reads the same Python environment and test files (a Python under
``/root`` that another user could not run), but a folder of mode 555 refuses it as it would
refuse a user.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest


def without_override() -> list[str]:
    """The words to put before a command so that file permissions hold for it ([] for a user).

    Skips the test when running as root without ``setpriv``, or where ``setpriv`` may not
    change the capability bounding set (a container without ``CAP_SETPCAP``).
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if not setpriv:
        pytest.skip("root writes into read-only folders, and setpriv (util-linux) is not here to stop it")
    prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
    tried = subprocess.run([*prefix, "true"], capture_output=True, text=True)
    if tried.returncode:
        pytest.skip(
            f"root writes into read-only folders, and setpriv cannot stop it here: {tried.stderr.strip()}"
        )
    return prefix
