"""STOPGAP motive lists: the file STOPGAP wrote reads as it is, ours read back with names and angles."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from deepfinder.core.errors import InputError
from deepfinder.core.particles import ParticleTable
from deepfinder.core.tables import dynamo, stopgap
from deepfinder.tests.realformats import REAL_FORMATS, needs_real_formats

HEADER = "\ndata_stopgap_motivelist\n\nloop_\n" + "".join(f"_{label}\n" for label in stopgap.LABELS)
ROW = "1\t24\t1\t1\tA\t824\t754\t673\t0.5\t0.25\t0.5\t5.5\t33\t-65\t8.5\t3"


@needs_real_formats
def test_stopgap_list_reads_with_shifts_added():
    read = stopgap.read(REAL_FORMATS / "stopgap_class6_er_mr1_1_sg_first200.star")
    table = read.particles
    assert len(table) == 200
    assert set(table.tomo) == {"24"}
    # First row: orig 824, 754, 673 plus shifts 0.2121, 0.6012, 5.4676; class 3; score 0.5452.
    np.testing.assert_allclose(table.xyz[0], [824.2121, 754.6012, 678.4676])
    assert table.class_id[0] == 3 and table.score[0] == pytest.approx(0.5452)
    assert set(table.class_id) == {1, 2, 3}
    assert np.all(table.xyz > 0) and np.all(table.xyz < 2000)
    assert read.voxel_size is None


def test_angles_are_motive_list_angles(tmp_path):
    path = tmp_path / "one.star"
    path.write_text(HEADER + ROW + "\n")
    rotation = stopgap.read(path).particles.rotation[0]
    # phi, psi, the = 33, -65, 8.5: Rz(psi) Rx(the) Rz(phi), which Dynamo writes as -psi, -the, -phi.
    expected = Rotation.from_euler("ZXZ", [-65, 8.5, 33], degrees=True).as_matrix()
    np.testing.assert_allclose(rotation, expected, atol=1e-12)
    np.testing.assert_allclose(rotation, dynamo.rotations_from_dynamo([[65, -8.5, -33]])[0], atol=1e-12)


def test_round_trip_keeps_positions_classes_orientations_and_names(tmp_path):
    rng = np.random.default_rng(8)
    table = ParticleTable(
        tomo=["TS 01", "Tomogramm ä", "TS 01", "7"],
        class_id=[1, 2, 3, 2],
        xyz=rng.uniform(0, 500, (4, 3)),
        rotation=Rotation.random(4, random_state=2).as_matrix(),
        score=[0.5, 0.25, 1.0, 0.75],
    )
    read = stopgap.read(stopgap.write(tmp_path / "picks.star", table)).particles
    np.testing.assert_allclose(read.xyz, table.xyz, atol=0.01)
    np.testing.assert_array_equal(read.tomo, table.tomo)
    np.testing.assert_array_equal(read.class_id, table.class_id)
    np.testing.assert_allclose(read.rotation, table.rotation, atol=1e-5)
    np.testing.assert_allclose(read.score, table.score, atol=1e-6)


def test_numbered_tomograms_are_written_with_their_numbers(tmp_path):
    table = ParticleTable(tomo=["24", "3"], class_id=1, xyz=[[1, 2, 3], [4, 5, 6]])
    path = stopgap.write(tmp_path / "picks.star", table)
    (tmp_path / "picks.doc").unlink()
    np.testing.assert_array_equal(stopgap.read(path).particles.tomo, ["24", "3"])


@pytest.mark.parametrize(
    ("row", "where"),
    [
        (ROW + "\t1", ":21:54: 17 values for the 16 labels"),
        (ROW.rsplit("\t", 1)[0], ":21:51: 15 values for the 16 labels"),
        (ROW.replace("\t754\t", "\tabc\t"), ":21:16: _orig_y: 'abc' is not a number"),
        (ROW.replace("\t754\t", "\tnan\t"), ":21:16: _orig_y: 'nan' is not a finite number"),
        (ROW.replace("\t24\t", "\t2.5\t"), ":21:3: tomogram numbers are whole numbers, got 2.5"),
    ],
)
def test_bad_rows_are_refused_with_their_place(tmp_path, row, where):
    path = tmp_path / "bad.star"
    path.write_text(HEADER + row + "\n")
    with pytest.raises(InputError, match=f"bad.star{where}"):
        stopgap.read(path)


def test_file_without_the_block_is_refused(tmp_path):
    path = tmp_path / "relion.star"
    path.write_text("data_particles\nloop_\n_rlnCoordinateX\n1\n")
    with pytest.raises(InputError, match="no data_stopgap_motivelist block"):
        stopgap.read(path)


def test_crlf_file_with_byte_order_mark_reads(tmp_path):
    path = tmp_path / "windows.star"
    path.write_bytes(("\ufeff" + HEADER + ROW + "\n").replace("\n", "\r\n").encode("utf-8"))
    np.testing.assert_allclose(stopgap.read(path).particles.xyz, [[824.25, 754.5, 678.5]])


def test_motive_lists_are_told_from_relion_files(tmp_path):
    motive_list = tmp_path / "sg.star"
    motive_list.write_text(HEADER + ROW + "\n")
    relion = tmp_path / "relion.star"
    relion.write_text("\n# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroup #1\n1\n")
    assert stopgap.is_motive_list(motive_list)
    assert not stopgap.is_motive_list(relion)
