"""Dynamo tables: the files Dynamo wrote read as they are, ours read back by us and by dynamotable."""

import dynamotable
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from deepfinder.core.errors import InputError
from deepfinder.core.particles import ParticleTable
from deepfinder.core.tables import dynamo
from deepfinder.tests.realformats import REAL_FORMATS, needs_real_formats

NAMES = ["TS_01", "tomo with spaces", "Tomogramm Ä ü"]


def particles() -> ParticleTable:
    rng = np.random.default_rng(4)
    return ParticleTable(
        tomo=[NAMES[i % 3] for i in range(7)],
        class_id=[1, 3, 2, 1, 3, 2, 5],
        xyz=rng.uniform(0, 400, (7, 3)),
        rotation=Rotation.random(7, random_state=5).as_matrix(),
        score=rng.uniform(0, 1, 7),
    )


def row(**values) -> str:
    """A 26-column Dynamo row; ``values`` maps 1-based column numbers (as c4=...) to text."""
    fields = ["1", "1", "1"] + ["0"] * 23
    fields[19], fields[21], fields[23:26] = "1", "1", ["10", "20", "30"]
    for key, text in values.items():
        fields[int(key[1:]) - 1] = text
    return " ".join(fields)


@needs_real_formats
def test_dynamo_table_with_complex_values_reads_with_its_table_map():
    read = dynamo.read(
        REAL_FORMATS / "dynamo_t_complex.tbl", table_map=REAL_FORMATS / "dynamo_tmap_complex.doc"
    )
    table = read.particles
    assert len(table) == 8742
    assert len(set(table.tomo)) == 48
    assert table.tomo[0] == "tomo_ts01.mrc_15.00Apx.mrc"
    # First row: x, y, z = 1018.9, 759.36, 641.59 plus dx, dy, dz = -1.4197, 0.57826, 1.5785.
    np.testing.assert_allclose(table.xyz[0], [1017.4803, 759.93826, 643.1685])
    assert table.score[0] == pytest.approx(0.052575)
    assert np.all(table.xyz > 0) and np.all(table.xyz < 2000)
    assert read.voxel_size is None


@needs_real_formats
def test_dynamo_table_of_26_columns_reads_with_indices_as_names():
    read = dynamo.read(REAL_FORMATS / "dynamo_b4_motl_CR_tm.tbl")
    table = read.particles
    assert len(table) == 1343
    assert len(set(table.tomo)) == 70
    assert table.tomo[0] == "2"
    np.testing.assert_allclose(table.xyz[0], [508.0651, 549.1602, 167.6847])
    assert set(table.class_id) == {1}
    assert np.all(table.xyz > 0) and np.all(table.xyz < 1100)


def test_round_trip_through_our_reader(tmp_path):
    table = particles()
    path = dynamo.write(tmp_path / "picks.tbl", table, voxel_size=7.5)
    read = dynamo.read(path)
    np.testing.assert_allclose(read.particles.xyz, table.xyz, atol=0.01)
    np.testing.assert_array_equal(read.particles.tomo, table.tomo)
    np.testing.assert_array_equal(read.particles.class_id, table.class_id)
    np.testing.assert_allclose(read.particles.rotation, table.rotation, atol=1e-6)
    np.testing.assert_allclose(read.particles.score, table.score, atol=1e-6)
    assert read.voxel_size == 7.5


def test_round_trip_through_dynamotable(tmp_path):
    table = particles()
    path = dynamo.write(tmp_path / "picks.tbl", table)
    frame = dynamotable.read(str(path))
    xyz = frame[["x", "y", "z"]].to_numpy() + frame[["dx", "dy", "dz"]].to_numpy()
    np.testing.assert_allclose(xyz, table.xyz, atol=0.01)
    np.testing.assert_array_equal(frame["class"], table.class_id)
    angles = frame[["tdrot", "tilt", "narot"]].to_numpy()
    np.testing.assert_allclose(dynamo.rotations_from_dynamo(angles), table.rotation, atol=1e-6)
    names = dynamo.read_table_map(tmp_path / "picks.doc")
    assert [names[i] for i in frame["tomo"]] == list(table.tomo)


def test_dynamo_angles_are_relion_angles_turned_by_90_degrees():
    # RELION (rot, tilt, psi) = (narot - 90, tilt, tdrot + 90) for the same orientation; RELION's
    # matrix is the inverse of the intrinsic ZYZ rotation of its angles (as our STAR files use them).
    tdrot, tilt, narot = 30.0, 50.0, -70.0
    relion = Rotation.from_euler("ZYZ", [narot - 90, tilt, tdrot + 90], degrees=True).inv().as_matrix()
    np.testing.assert_allclose(dynamo.rotations_from_dynamo([[tdrot, tilt, narot]])[0], relion, atol=1e-12)


def test_crlf_file_with_byte_order_mark_reads(tmp_path):
    path = tmp_path / "windows.tbl"
    path.write_bytes(("\ufeff" + row() + "\r\n" + row(c24="11") + "\r\n").encode("utf-8"))
    np.testing.assert_allclose(dynamo.read(path).particles.xyz[:, 0], [10, 11])


def test_table_map_beside_the_table_names_its_tomograms(tmp_path):
    (tmp_path / "picks.tbl").write_text(row(c20="2") + "\n")
    (tmp_path / "picks.doc").write_text("2 /data/my tomo.mrc\n")
    assert dynamo.read(tmp_path / "picks.tbl").particles.tomo[0] == "/data/my tomo.mrc"


@pytest.mark.parametrize(
    ("lines", "where"),
    [
        ([row(), row()[:-3]], ":2:"),  # 25 values
        ([row(), row() + " 0"], ":2:"),  # one value too many
        ([row(), row(c24="abc")], ":2:24"),
        ([row(c25="nan")], ":1:25"),
        ([row(c26="inf")], ":1:26"),
        ([row(c22="1.5")], ":1:22"),
    ],
)
def test_bad_rows_are_refused_with_their_place(tmp_path, lines, where):
    path = tmp_path / "bad.tbl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=f"bad.tbl{where}"):
        dynamo.read(path)


def test_tomogram_missing_from_the_table_map_is_refused(tmp_path):
    (tmp_path / "picks.tbl").write_text(row(c20="3") + "\n")
    (tmp_path / "map.doc").write_text("1\ttomo_a\n")
    with pytest.raises(InputError, match="picks.tbl:1:20: tomogram 3 is not in the table map"):
        dynamo.read(tmp_path / "picks.tbl", table_map=tmp_path / "map.doc")
