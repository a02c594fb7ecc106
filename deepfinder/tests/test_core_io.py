import warnings

import mrcfile
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from deepfinder.core import io
from deepfinder.core.particles import ParticleTable


@pytest.fixture
def particles():
    rng = np.random.default_rng(4)
    return ParticleTable(
        tomo=["tomo_a", "tomo_a", "tomo_b", "tomo_b"],
        class_id=[1, 2, 2, 3],
        xyz=rng.uniform(0, 60, (4, 3)).round(2),
        rotation=Rotation.random(4, random_state=5).as_matrix(),
        score=[0.5, 0.25, 0.75, 1.0],
    )


def _assert_same(read, written, atol=1e-3):
    assert list(read.tomo) == list(written.tomo)
    assert list(read.class_id) == list(written.class_id)
    np.testing.assert_allclose(read.xyz, written.xyz, atol=atol)
    np.testing.assert_allclose(read.rotation, written.rotation, atol=1e-4)
    np.testing.assert_allclose(read.score, written.score, atol=1e-4)


def test_volume_round_trip_keeps_voxel_size_and_axes(tmp_path):
    volume = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    io.write_volume(tmp_path / "v.mrc", volume, voxel_size=13.7)
    read = io.read_volume(tmp_path / "v.mrc")
    np.testing.assert_array_equal(read, volume)
    assert isinstance(read, np.memmap)
    assert io.read_voxel_size(tmp_path / "v.mrc") == pytest.approx(13.7, abs=1e-3)


def test_zero_machine_stamp_is_read_with_a_warning(tmp_path):
    path = tmp_path / "stamp.mrc"
    io.write_volume(path, np.ones((3, 3, 3), np.float32))
    with mrcfile.open(path, mode="r+") as mrc:
        mrc.header.machst = [0, 0, 0, 0]
    with pytest.warns(UserWarning, match="non-standard MRC header"):
        assert io.read_volume(path).shape == (3, 3, 3)


def test_missing_and_non_mrc_files_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        io.read_volume(tmp_path / "absent.mrc")
    (tmp_path / "text.mrc").write_text("not a volume")
    with pytest.raises(ValueError, match="not a readable MRC"):
        io.read_volume(tmp_path / "text.mrc")


def test_csv_round_trip(tmp_path, particles):
    _assert_same(io.read_particles_csv(io.write_particles_csv(tmp_path / "p.csv", particles)), particles)


def test_xml_object_list_round_trip_and_upstream_angle_names(tmp_path, particles):
    path = io.write_particles_xml(tmp_path / "p.xml", particles)
    _assert_same(io.read_particles_xml(path), particles)
    text = path.read_text()
    assert 'phi="' in text and 'psi="' in text and 'the="' in text


def test_xml_angles_follow_zxz_phi_the_psi(tmp_path):
    (tmp_path / "one.xml").write_text(
        '<objlist><object tomo_idx="0" class_label="4" x="1" y="2" z="3" '
        'phi="30" psi="10" the="90"/></objlist>'
    )
    table = io.read_particles_xml(tmp_path / "one.xml")
    expected = Rotation.from_euler("zxz", [30, 90, 10], degrees=True).as_matrix()
    np.testing.assert_allclose(table.rotation[0], expected, atol=1e-9)
    assert table.class_id[0] == 4 and np.isnan(table.score[0])


@pytest.mark.parametrize("convention", ["relion4", "relion5"])
def test_star_round_trip(tmp_path, particles, convention):
    shapes = {"tomo_a": (64, 64, 32), "tomo_b": (63, 65, 31)}
    path = io.write_particles_star(
        tmp_path / "p.star", particles, convention=convention, voxel_size=7.5, volume_shape_xyz=shapes
    )
    read = io.read_particles_star(path, convention=convention, voxel_size=7.5, volume_shape_xyz=shapes)
    _assert_same(read, particles)


@pytest.mark.parametrize("name", ["p.csv", "p.xml", "p.star", "P.STAR"])
def test_the_extension_chooses_the_format(tmp_path, particles, name):
    shapes = {"tomo_a": (64, 64, 32), "tomo_b": (63, 65, 31)}
    written = io.write_particles(tmp_path / name, particles, "relion5", 7.5, shapes)
    header = written.read_text()[:40]
    assert {"p.csv": "tomo,class_id", "p.xml": "<objlist"}.get(name, "data_particles") in header
    _assert_same(io.read_particles(written, "relion5", 7.5, shapes), particles)


def test_other_extensions_are_refused(tmp_path, particles):
    with pytest.raises(ValueError, match="unknown particle file type; use .csv, .xml or .star"):
        io.write_particles(tmp_path / "p.txt", particles)
    with pytest.raises(ValueError, match="unknown particle file type"):
        io.read_particles(tmp_path / "p")
    assert not list(tmp_path.iterdir())


def test_relion5_coordinates_are_centred_angstrom(tmp_path):
    table = ParticleTable(tomo="t", class_id=1, xyz=[[32, 32, 16]])
    path = io.write_particles_star(
        tmp_path / "c.star", table, convention="relion5", voxel_size=10, volume_shape_xyz=(64, 64, 32)
    )
    row = path.read_text().strip().splitlines()[-1].split()
    assert [float(v) for v in row[1:4]] == [0.0, 0.0, 0.0]


def test_relion5_without_tomogram_size_is_refused(tmp_path, particles):
    with pytest.raises(ValueError, match="give the tomogram size"):
        io.write_particles_star(tmp_path / "p.star", particles, convention="relion5")


def test_identity_orientations_write_without_warnings(tmp_path):
    table = ParticleTable(tomo="t", class_id=1, xyz=[[1, 2, 3]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        io.write_particles_xml(tmp_path / "i.xml", table)
        io.write_particles_star(tmp_path / "i.star", table)


def test_star_angles_follow_relion_convention(tmp_path):
    # Scipion's reliontomo writes, for a particle of orientation R, angles whose
    # intrinsic ZYZ matrix Rz(rot) Ry(tilt) Rz(psi) is R^-1.
    rotation = Rotation.from_euler("ZYZ", [40, 70, -20], degrees=True).inv().as_matrix()
    table = ParticleTable(tomo="t", class_id=1, xyz=[[1, 2, 3]], rotation=rotation[None])
    path = io.write_particles_star(tmp_path / "r.star", table)
    row = path.read_text().strip().splitlines()[-1].split()
    np.testing.assert_allclose([float(v) for v in row[4:7]], [40, 70, -20], atol=1e-3)
    (tmp_path / "r5.star").write_text(
        "data_particles\nloop_\n_rlnTomoName\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n"
        "_rlnTomoSubtomogramRot\n_rlnTomoSubtomogramTilt\n_rlnTomoSubtomogramPsi\n"
        "t 1 2 3 40 70 -20\n"
    )
    np.testing.assert_allclose(io.read_particles_star(tmp_path / "r5.star").rotation[0], rotation, atol=1e-9)
