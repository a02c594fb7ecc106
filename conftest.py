"""Run the suite against a throw-away, headless Scipion configuration.

This file is loaded by pytest before the ``deepfinder`` package (which imports
pyworkflow), so the private configuration is in place when Scipion reads it. The
configuring module is run from its file, not imported: importing it would import
the ``deepfinder`` package, and pyworkflow with it, first.
"""

import atexit
import os
import runpy
import shutil
import tempfile
from pathlib import Path

configure = runpy.run_path(str(Path(__file__).parent / "deepfinder" / "headless_scipion.py"))["configure"]
_root = configure(tempfile.mkdtemp(prefix="deepfinder-scipion-"))
if not os.environ.get("DEEPFINDER_KEEP_TEST_PROJECTS"):
    atexit.register(shutil.rmtree, _root, ignore_errors=True)
