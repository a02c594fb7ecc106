"""The README's main job: DeepFinder on a generated dataset, in a headless Scipion project.

Simulates four tomograms, trains on three, picks particles in the fourth and
prints per-class precision, recall and F1. With --lamella: three tomograms of a
tilted slab of ice under a layer of look-alikes and gold beads, with the slab as
each tomogram's mask; trains on two, segments the third and clusters it
four ways (with or without an automatic score threshold, with or without the
mask), then segments and clusters it again within the mask, printing the scores and
the picks outside the slab of each way.
Everything lands in ./output/demo,
a Scipion home of its own (the user's Scipion configuration is not touched).
Each protocol is reported as it starts and ends, with its progress in between.
"""

import argparse
import logging
import os
import runpy
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Run from its file: importing it would import the deepfinder package, and pyworkflow, before it configures.
configure_scipion = runpy.run_path(str(REPO / "deepfinder" / "headless_scipion.py"))["configure"]


@contextmanager
def subprocess_stderr_to(path: Path) -> Iterator[None]:
    """Send what child processes write to the terminal's stderr into ``path``.

    The protocols' Python output goes to their run logs, but native libraries
    write to the inherited file descriptor: TensorFlow's start-up lines (oneDNN,
    CUDA drivers, "failed call to cuInit" without a GPU) whatever its log level.
    This process's own errors still reach the terminal.
    """
    sys.stderr.flush()
    terminal = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
    python_stderr, sys.stderr = sys.stderr, os.fdopen(terminal, "w", buffering=1)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)
        sys.stderr.close()
        sys.stderr = python_stderr


def show_progress() -> None:
    """Print the deepfinder loggers' INFO messages (simulation, protocols) with the time of day."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s  %(message)s", datefmt="%H:%M:%S"))
    logger = logging.getLogger("deepfinder")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out",
        default=REPO / "output" / "demo",
        type=Path,
        help="folder for the Scipion home, data and project (default: ./output/demo)",
    )
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (16 steps each)")
    parser.add_argument(
        "--lamella",
        action="store_true",
        help="lamella tomograms with their slab masks: also cluster with an automatic score "
        "threshold and within the masks, and compare",
    )
    args = parser.parse_args()
    root = configure_scipion(args.out)

    from deepfinder.workflow import (
        SimulatedDataset,
        TrainFormValues,
        create_project,
        four_ways_report,
        run_pipeline,
    )

    show_progress()
    start = time.time()
    if args.lamella:
        dataset = SimulatedDataset(root / "tests" / "deepfinder_lamella", "lamella")
        project_name, train_pattern, held_out = "DeepFinderLamellaDemo", "tomo_00[01].mrc", "tomo_002"
    else:
        dataset = SimulatedDataset(root / "tests" / "deepfinder_demo", "demo")
        project_name, train_pattern, held_out = "DeepFinderDemo", "tomo_00[012].mrc", "tomo_003"
    print(f">>> Generating the {dataset.preset} dataset in {dataset.path} (once)", flush=True)
    dataset.ensure()
    project = create_project(project_name)
    native_log = root / "native_stderr.log"
    print(f">>> Running the pipeline in the Scipion project {project.path}", flush=True)
    print(f"    (TensorFlow's own start-up messages go to {native_log})", flush=True)
    with subprocess_stderr_to(native_log):
        run = run_pipeline(
            project,
            dataset,
            train_pattern=train_pattern,
            test_pattern=f"{held_out}.mrc",
            training=TrainFormValues(patchSize=40, shiftVoxels=8, epochs=args.epochs),
        )
        if args.lamella:
            report = four_ways_report(
                project,
                dataset,
                run["test tomograms"].Tomograms,
                run["segment"].labelMaps,
                plain=run["cluster"],
                model=run["train"].model,
            )
    print(f"\nPicking on the held-out tomogram {held_out} (distance matching, one-to-one):")
    if args.lamella:
        print(report)
    else:
        print(Path(run["evaluate"]._getExtraPath("evaluation.txt")).read_text())
    pictures = sorted(Path(project.path).glob("Runs/*/extra/*.png"))
    print(f"Project: {project.path}")
    print(f"  open it in the Scipion GUI with SCIPION_USER_DATA={root / 'ScipionUserData'}")
    for picture in pictures:
        print(f"Picture: {picture}")
    print(f"Done in {(time.time() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
