"""Where the particle tables written by real tools lie (``../shared/data/realformats`` beside the
repository, or the folder named by ``DEEPFINDER_REALFORMATS``), and the mark that skips tests without them."""

import os
from pathlib import Path

import pytest

REAL_FORMATS = Path(
    os.environ.get("DEEPFINDER_REALFORMATS")
    or Path(__file__).resolve().parents[3] / "shared" / "data" / "realformats"
)
needs_real_formats = pytest.mark.skipif(
    not REAL_FORMATS.is_dir(), reason=f"{REAL_FORMATS} absent: set DEEPFINDER_REALFORMATS to the folder"
)
