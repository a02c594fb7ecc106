"""Where the benchmarks find the SHREC'19 data (the folder holding shrec19/ and templates_10A/).

``--shrec-dir``, else the DEEPFINDER_SHREC19_DIR environment variable, else
``../shared/data`` beside the repository when it exists.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from deepfinder.core.simulate import SHREC19_DIR_VARIABLE, shrec19_dir

BESIDE_THE_REPOSITORY = Path(__file__).resolve().parents[2] / "shared" / "data"


def add_shrec_dir_option(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get(SHREC19_DIR_VARIABLE) or (
        BESIDE_THE_REPOSITORY if BESIDE_THE_REPOSITORY.is_dir() else None
    )
    parser.add_argument(
        "--shrec-dir",
        type=Path,
        default=default,
        help=f"the folder holding shrec19/ and templates_10A/ (default: ${SHREC19_DIR_VARIABLE}, "
        f"else {BESIDE_THE_REPOSITORY} when it exists; now {default})",
    )


def find_shrec_dir(option: Path | None) -> Path | None:
    """The SHREC'19 folder, or None after printing why the SHREC'19 part is skipped."""
    try:
        return shrec19_dir(option)
    except ValueError as error:
        print(f"Skipped: {error}")
        return None
