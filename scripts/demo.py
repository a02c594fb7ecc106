"""The README's main job: DeepFinder on a generated dataset, in a headless Scipion project.

Simulates four tomograms, trains on three, picks particles in the fourth and
prints per-class precision, recall and F1. Everything lands in ./output/demo,
a Scipion home of its own (the user's Scipion configuration is not touched).
"""

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

import headless_scipion

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--out",
        default=REPO / "output" / "demo",
        type=Path,
        help="folder for the Scipion home, data and project (default: ./output/demo)",
    )
    parser.add_argument("--epochs", type=int, default=30, help="training epochs (16 steps each)")
    args = parser.parse_args()
    root = headless_scipion.configure(args.out)

    from pyworkflow.project import Manager

    from deepfinder.tests import DEMO
    from deepfinder.tests.pipeline import TrainingSettings, run_pipeline

    start = time.time()
    print(f">>> Generating the demo dataset in {DEMO.path} (once)", flush=True)
    DEMO.ensure()
    manager = Manager()
    project_name = "DeepFinderDemo"
    project_path = Path(manager.getProjectPath(project_name))
    if project_path.exists():
        shutil.rmtree(project_path)
    project = manager.createProject(project_name)
    os.chdir(project.path)  # Scipion resolves the project's files from its folder
    print(f">>> Running the pipeline in the Scipion project {project.path}", flush=True)
    run = run_pipeline(
        project,
        DEMO,
        train_pattern="tomo_00[012].mrc",
        test_pattern="tomo_003.mrc",
        training=TrainingSettings(patchSize=40, shiftVoxels=8, epochs=args.epochs),
    )
    evaluation = Path(run["evaluate"]._getExtraPath("evaluation.txt"))
    print("\nPicking on the held-out tomogram tomo_003 (distance matching, one-to-one):")
    print(evaluation.read_text())
    pictures = sorted(Path(project.path).glob("Runs/*/extra/*.png"))
    print(f"Project: {project.path}")
    print(f"  open it in the Scipion GUI with SCIPION_USER_DATA={root / 'ScipionUserData'}")
    for picture in pictures:
        print(f"Picture: {picture}")
    print(f"Done in {(time.time() - start) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
