"""copick projects: the project copick wrote reads as it is; our picks read back, by copick too."""

import json
import os
import shutil
import subprocess
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from deepfinder.core.errors import InputError
from deepfinder.core.particles import ParticleTable
from deepfinder.core.tables import copick
from deepfinder.core.tables.geometry import TomogramGeometry

PROJECT = Path(__file__).parent / "data" / "copick" / "project"
# An interpreter with the copick library (numpy >= 2: not Scipion's environment), to check that
# copick reads what we write; see scripts/copick_fixtures.py.
COPICK_PYTHON = os.environ.get("DEEPFINDER_COPICK_PYTHON")


@pytest.fixture
def project(tmp_path) -> Path:
    shutil.copytree(PROJECT, tmp_path / "project")
    return tmp_path / "project" / "copick_config.json"


def particles() -> ParticleTable:
    rng = np.random.default_rng(3)
    return ParticleTable(
        tomo=["TS 003 ü", "TS_001", "TS 003 ü", "TS_001"],
        class_id=[1, 2, 2, 1],
        xyz=rng.uniform(0, 30, (4, 3)),
        rotation=Rotation.random(4, random_state=9).as_matrix(),
        score=[0.5, 0.25, 0.75, 1.0],
    )


def test_picks_copick_wrote_read_with_shifts_added():
    read = copick.read(PROJECT / "copick_config.json")
    assert read.voxel_size == 1.0
    assert len(read.particles) == 20  # 2 runs x 2 users x (3 ribosomes + 2 proteasomes)
    assert set(read.particles.tomo) == {"TS_001", "TS 002 ä"}
    picks = json.loads((PROJECT / "ExperimentRuns/TS_001/Picks/alice_1_ribosome.json").read_text())
    point = picks["points"][0]
    transformation = np.array(point["transformation_"])
    centre = [point["location"][a] for a in "xyz"] + transformation[:3, 3]
    table = copick.read(PROJECT / "copick_config.json", user_id="alice").particles
    first = np.flatnonzero((table.tomo == "TS_001") & (table.class_id == 1))[0]
    np.testing.assert_allclose(table.xyz[first], centre)
    np.testing.assert_allclose(table.rotation[first], transformation[:3, :3])
    assert table.score[first] == pytest.approx(point["score"])


def test_picks_filtered_by_user_and_session():
    config = PROJECT / "copick_config.json"
    assert len(copick.read(config, user_id="alice").particles) == 10
    assert len(copick.read(config, session_id="0").particles) == 10
    assert len(copick.read(config, user_id="alice", session_id="0").particles) == 0


def test_tomograms_of_the_runs_with_their_geometry():
    found = copick.tomograms(PROJECT / "copick_config.json")
    assert sorted(t.run for t in found) == ["TS 002 ä", "TS_001"]
    assert {t.tomo_type for t in found} == {"wbp"}
    assert {t.geometry for t in found} == {TomogramGeometry(size_xyz=(32, 24, 16), voxel_size=10.0)}


def test_round_trip_through_our_reader(project):
    table = particles()
    copick.write(project, table, voxel_size=10.0)
    read = copick.read(project, user_id="deepfinder")
    order = np.lexsort((read.particles.class_id, read.particles.tomo))
    expected = np.lexsort((table.class_id, table.tomo))
    np.testing.assert_allclose(read.particles.xyz[order], table.xyz[expected] * 10.0, atol=0.01)
    np.testing.assert_array_equal(read.particles.tomo[order], table.tomo[expected])
    np.testing.assert_array_equal(read.particles.class_id[order], table.class_id[expected])
    np.testing.assert_allclose(read.particles.rotation[order], table.rotation[expected], atol=1e-12)
    np.testing.assert_allclose(read.particles.score[order], table.score[expected])
    picks = project.parent / "ExperimentRuns" / "TS 003 ü" / "Picks" / "deepfinder_0_proteasome.json"
    assert json.loads(picks.read_text(encoding="utf-8"))["run_name"] == "TS 003 ü"


@pytest.mark.skipif(not COPICK_PYTHON, reason="set DEEPFINDER_COPICK_PYTHON to a Python with copick")
def test_copick_reads_what_we_write(project):
    table = particles()
    copick.write(project, table, voxel_size=10.0)
    script = textwrap.dedent(
        """
        import json, os, sys
        import copick
        os.chdir(os.path.dirname(sys.argv[1]))  # the overlay root is relative to the config's folder
        root = copick.from_file(sys.argv[1])
        out = []
        for run in root.runs:
            for picks in run.get_picks(user_id="deepfinder"):
                positions, transforms = picks.numpy()
                for p, t in zip(positions.tolist(), transforms.tolist()):
                    out.append([run.name, picks.pickable_object_name, p, t])
        print(json.dumps(out))
        """
    )
    result = subprocess.run(
        [COPICK_PYTHON, "-c", script, str(project)], capture_output=True, text=True, check=True
    )
    labels = {"ribosome": 1, "proteasome": 2}
    seen = {
        (run, labels[name], tuple(np.round(position, 3))): np.array(t)
        for run, name, position, t in json.loads(result.stdout)
    }
    assert len(seen) == len(table)
    for i in range(len(table)):
        transform = seen[(table.tomo[i], table.class_id[i], tuple(np.round(table.xyz[i] * 10.0, 3)))]
        np.testing.assert_allclose(transform[:3, :3], table.rotation[i], atol=1e-12)


def test_class_without_a_particle_object_is_refused(project):
    table = ParticleTable(tomo="TS_001", class_id=[3], xyz=[[1, 2, 3]])
    with pytest.raises(InputError, match=r"no particle object has the label of class\(es\) \[3\]"):
        copick.write(project, table, voxel_size=10.0)


@pytest.mark.parametrize("user_id", ["deep finder", "deep_finder", ""])
def test_user_ids_copick_refuses_are_refused(project, user_id):
    with pytest.raises(InputError, match="copick ids"):
        copick.write(project, particles(), voxel_size=10.0, user_id=user_id)


def test_writing_without_voxel_size_is_refused(project):
    with pytest.raises(InputError, match="give the particles' voxel size"):
        copick.write(project, particles())


@pytest.mark.parametrize(
    ("point", "message"),
    [
        ({"location": {"x": 1, "y": 2}}, r"points\[0\]: no location"),
        (
            {"location": {"x": 1, "y": 2, "z": float("nan")}},
            r"points\[0\]: location or transformation_ is not finite",
        ),
        (
            {"location": {"x": 1, "y": 2, "z": 3}, "transformation_": [[1, 0], [0, 1]]},
            r"points\[0\]: transformation_ is not a 4 x 4 matrix",
        ),
    ],
)
def test_bad_points_are_refused_with_their_place(project, point, message):
    picks = project.parent / "ExperimentRuns" / "TS_001" / "Picks" / "alice_1_ribosome.json"
    content = json.loads(picks.read_text())
    content["points"] = [point]
    picks.write_text(json.dumps(content))
    with pytest.raises(InputError, match=f"alice_1_ribosome.json: {message}"):
        copick.read(project)


def test_file_that_is_not_json_is_refused_with_line_and_column(project):
    picks = project.parent / "ExperimentRuns" / "TS_001" / "Picks" / "alice_1_ribosome.json"
    picks.write_text('{\n  "points": [\n    {"location": oops}\n  ]\n}\n')
    with pytest.raises(InputError, match=r"alice_1_ribosome.json:3:18: not JSON"):
        copick.read(project)
