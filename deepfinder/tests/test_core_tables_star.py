"""RELION STAR tables: the files RELION 4/5, Warp and WarpTools wrote, round trips, strict rows."""

import logging

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from deepfinder.core import tables
from deepfinder.core.errors import InputError
from deepfinder.core.particles import ParticleTable
from deepfinder.core.tables import star
from deepfinder.tests.realformats import REAL_FORMATS, needs_real_formats
from deepfinder.tests.tables_helpers import assert_same, particles  # noqa: F401

SIZES = {"tomo a": (64, 64, 32), "tömo_ß": (80, 80, 40), "_t'b": (70, 60, 30)}
HEADER = "data_particles\nloop_\n_rlnTomoName\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n"
BINNED_PIXEL = 7.407407 * 1.35  # the RELION 5 tutorial's tomograms, binned 7.407407 from 1.35 A


def _geometries(voxel_size: float) -> dict:
    return {name: tables.TomogramGeometry(size, voxel_size) for name, size in SIZES.items()}


@pytest.mark.parametrize("fmt", ["relion5", "relion4"])
def test_round_trip_keeps_names_with_spaces_and_accents(tmp_path, particles, fmt):  # noqa: F811
    path = tables.write_table(tmp_path / "p.star", particles, fmt, voxel_size=7.5, tomograms=_geometries(7.5))
    read = tables.read_table(path, tomograms=_geometries(7.5), voxel_size=7.5)
    assert_same(read.particles, particles)


def test_relion5_output_has_optics_and_centred_angstrom(tmp_path):
    table = ParticleTable(tomo="my tomo", class_id=1, xyz=[[31, 31, 15]])
    path = star.write_relion5(
        tmp_path / "c.star", table, 10.0, {"my tomo": tables.TomogramGeometry((64, 64, 32), 10.0)}
    )
    blocks = star.read_blocks(path)
    assert list(blocks) == ["optics", "particles"]
    assert blocks["optics"].numbers("rlnTomoTiltSeriesPixelSize")[0] == 10.0
    assert blocks["particles"].texts("rlnTomoName") == ["my tomo"]
    assert '"my tomo"' in path.read_text()
    centred = [blocks["particles"].numbers(f"rlnCenteredCoordinate{a}Angst")[0] for a in "XYZ"]
    assert centred == [0.0, 0.0, 0.0]  # voxel size / 2 - 1: RELION 5's centre


def test_origins_are_subtracted_turned_by_the_subtomogram_orientation(tmp_path):
    (tmp_path / "o.star").write_text(
        "data_optics\nloop_\n_rlnOpticsGroup\n_rlnTomoTiltSeriesPixelSize\n1 2.0\n\n"
        "data_particles\nloop_\n_rlnTomoName\n_rlnCoordinateX\n_rlnCoordinateY\n_rlnCoordinateZ\n"
        "_rlnOriginXAngst\n_rlnOriginYAngst\n_rlnOriginZAngst\n_rlnTomoSubtomogramRot\n_rlnOpticsGroup\n"
        "t 10 10 10 4 0 0 90 1\n"
    )
    read = star.read(tmp_path / "o.star")
    turned = Rotation.from_euler("ZYZ", [90, 0, 0], degrees=True).as_matrix().T @ [2.0, 0, 0]
    assert read.voxel_size == 2.0
    np.testing.assert_allclose(read.particles.xyz[0], [10, 10, 10] - turned, atol=1e-9)


def test_angles_follow_relion_convention(tmp_path):
    # Scipion's reliontomo writes, for a particle of orientation R, angles whose
    # intrinsic ZYZ matrix Rz(rot) Ry(tilt) Rz(psi) is R^-1.
    rotation = Rotation.from_euler("ZYZ", [40, 70, -20], degrees=True).inv().as_matrix()
    table = ParticleTable(tomo="t", class_id=1, xyz=[[1, 2, 3]], rotation=rotation[None])
    blocks = star.read_blocks(star.write_relion4(tmp_path / "r.star", table, 1.0))
    angles = [blocks["particles"].numbers(f"rlnAngle{name}")[0] for name in ("Rot", "Tilt", "Psi")]
    np.testing.assert_allclose(angles, [40, 70, -20], atol=1e-3)


@pytest.mark.parametrize(
    "row, message",
    [
        ("t 1 2\n", r"p.star:8:6: 3 values for the 4 labels of data_particles"),
        ("t 1 2 3 4\n", r"p.star:8:9: 5 values for the 4 labels of data_particles"),
        ("t 1 two 3\n", r"p.star:8:5: _rlnCoordinateY: 'two' is not a number"),
        ("t nan 2 3\n", r"p.star:8:3: _rlnCoordinateX: 'nan' is not a finite number"),
        ("'t 1 2 3\n", r"p.star:8:1: quote ' left open"),
    ],
)
def test_malformed_rows_are_refused_with_file_line_column(tmp_path, row, message):
    (tmp_path / "p.star").write_text(HEADER + "t 8 8 8\n" + row)
    with pytest.raises(InputError, match=message):
        tables.read_table(tmp_path / "p.star", coordinates_voxel_size=1.0)


def test_quoted_names_bom_and_crlf_are_read(tmp_path):
    text = HEADER + "'my tomo' 1 2 3\n\"it's\" 4 5 6\n"
    (tmp_path / "q.star").write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    read = tables.read_table(tmp_path / "q.star", coordinates_voxel_size=5.0)
    assert list(read.particles.tomo) == ["my tomo", "it's"]
    assert read.voxel_size == 5.0


def test_pixels_without_a_pixel_size_are_refused_with_the_option(tmp_path):
    (tmp_path / "p.star").write_text(HEADER + "t 8 8 8\n")
    with pytest.raises(InputError, match="states no pixel size: give the coordinates' voxel size"):
        tables.read_table(tmp_path / "p.star")


def test_centred_positions_without_tomogram_sizes_are_refused(tmp_path, particles):  # noqa: F811
    path = tables.write_table(tmp_path / "p.star", particles, voxel_size=7.5, tomograms=_geometries(7.5))
    with pytest.raises(InputError, match="the size of tomogram"):
        tables.read_table(path)


@needs_real_formats
def test_the_two_relion5_files_of_the_same_picks_agree():
    tomograms = star.read_tomograms(REAL_FORMATS / "relion5_tutorial_denoise_tomograms.star")
    centred = tables.read_table(
        REAL_FORMATS / "relion5_picktomo_job019_particles.star", tomograms=tomograms, voxel_size=BINNED_PIXEL
    ).particles.of_tomogram("TS_01")
    binned = tables.read_table(
        REAL_FORMATS / "relion5_picktomo_job019_TS_01_annotation.star", coordinates_voxel_size=BINNED_PIXEL
    ).particles
    assert len(centred) == len(binned) == 1960
    np.testing.assert_allclose(centred.xyz, binned.xyz, atol=0.01)


@needs_real_formats
def test_warptools_angles_in_degrees_times_57_are_divided_back_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        read = star.read(REAL_FORMATS / "warptools2_particles_matching.star")
    assert "known WarpTools defect" in caplog.text
    assert read.voxel_size == 4.0  # the export's pixel size, not the tilt series'
    assert read.particles.xyz.max() < 1200
