"""Write the copick project the copick tests read, with the copick library itself.

copick needs numpy >= 2, which Scipion's pins forbid, so this runs once in a separate environment:

    python3 -m venv copickenv && copickenv/bin/pip install copick==1.31.0
    copickenv/bin/python scripts/copick_fixtures.py deepfinder/tests/data/copick/project

The project has two particle objects and a segmentation-only one, two runs (one whose name holds a
space and a non-ASCII letter), picks of two users, and a tomogram of 32 x 24 x 16 voxels at 10 A per
voxel in each run. Two changes to what copick writes: the overlay root, an absolute path, is made
relative to the config's folder so that the project moves with the repository, and the tomograms'
voxels are dropped (their metadata stays).
"""

import json
import shutil
import sys
from pathlib import Path

import copick
import numpy as np
from copick.models import PickableObject
from scipy.spatial.transform import Rotation

folder = Path(sys.argv[1]).resolve()
shutil.rmtree(folder, ignore_errors=True)
config_path = folder / "copick_config.json"
objects = [
    PickableObject(name="ribosome", is_particle=True, label=1, radius=120.0),
    PickableObject(name="proteasome", is_particle=True, label=2, radius=80.0),
    PickableObject(name="membrane", is_particle=False, label=3),
]
root = copick.new_config(str(config_path), str(folder), "deepfinder test project", "", objects)

rng = np.random.default_rng(0)
for run_name in ("TS_001", "TS 002 ä"):
    run = root.new_run(run_name)
    spacing = run.new_voxel_spacing(10.0)
    spacing.new_tomogram("wbp").from_numpy(np.zeros((16, 24, 32), np.float32), levels=1)
    for object_name, count in (("ribosome", 3), ("proteasome", 2)):
        for user_id, session_id in (("alice", "1"), ("picker", "0")):
            transforms = np.tile(np.eye(4), (count, 1, 1))
            transforms[:, :3, :3] = Rotation.random(count, random_state=count).as_matrix()
            transforms[:, :3, 3] = rng.uniform(-5, 5, (count, 3))
            picks = run.new_picks(object_name, session_id, user_id)
            picks.from_numpy(
                rng.uniform(0, 150, (count, 3)) * [32 / 16, 24 / 16, 1],
                transforms,
                scores=rng.uniform(0, 1, count),
            )
            picks.store()

# The tests read the tomograms' metadata only: their voxels (one 256^3 chunk each) are not kept.
for chunk in folder.glob("ExperimentRuns/*/VoxelSpacing*/*.zarr/0/0"):
    shutil.rmtree(chunk)
config = json.loads(config_path.read_text())
config["overlay_root"] = "local://."
config_path.write_text(json.dumps(config, indent=4) + "\n")
