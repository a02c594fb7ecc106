"""Run the suite against a throw-away, headless Scipion configuration.

This file is loaded by pytest before the ``deepfinder`` package (which imports
pyworkflow), so the private configuration is in place when Scipion reads it.
"""

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "scripts"))
import headless_scipion  # noqa: E402

_root = headless_scipion.configure(tempfile.mkdtemp(prefix="deepfinder-scipion-"))
if not os.environ.get("DEEPFINDER_KEEP_TEST_PROJECTS"):
    atexit.register(shutil.rmtree, _root, ignore_errors=True)
