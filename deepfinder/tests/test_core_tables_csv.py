"""The project's CSV tables: round trip, spreadsheet files, malformed rows refused with file:line:column."""

import numpy as np
import pytest

from deepfinder.core.errors import InputError
from deepfinder.core.tables import csv as particle_csv
from deepfinder.tests.tables_helpers import assert_same, particles  # noqa: F401 (fixture)

HEADER = "tomo,class_id,x,y,z\n"


def test_round_trip_keeps_names_classes_positions_orientations(tmp_path, particles):  # noqa: F811
    read = particle_csv.read(particle_csv.write(tmp_path / "p.csv", particles))
    assert read.voxel_size is None  # in the tomograms' voxels
    assert_same(read.particles, particles)


def test_a_spreadsheet_file_with_bom_and_crlf_is_read(tmp_path):
    (tmp_path / "s.csv").write_bytes(
        b"\xef\xbb\xbf" + HEADER.replace("\n", "\r\n").encode() + b"t,2,1,2,3\r\n"
    )
    table = particle_csv.read(tmp_path / "s.csv").particles
    assert list(table.class_id) == [2]
    np.testing.assert_allclose(table.xyz, [[1, 2, 3]])


@pytest.mark.parametrize(
    "row, message",
    [
        ("t,1,1,2\n", r"p.csv:3:5: 4 values for 5 columns"),
        ("t,1,1,2,3,4\n", r"p.csv:3:6: 6 values for 5 columns"),
        ("t,1,1,two,3\n", r"p.csv:3:4: column y: 'two' is not a number"),
        ("t,1,nan,2,3\n", r"p.csv:3:3: column x: 'nan' is not a finite number"),
        ("t,1,1,2,inf\n", r"p.csv:3:5: column z: 'inf' is not a finite number"),
        ('"t,1,1,2,3\n', r"p.csv:3: unexpected end of data \(a quote left open\?\)"),
        ("t,1.5,1,2,3\n", r"p.csv:3:2: column class_id: class ids are whole numbers, got 1.5"),
    ],
)
def test_malformed_rows_are_refused_with_file_line_column(tmp_path, row, message):
    (tmp_path / "p.csv").write_text(HEADER + "t,1,8,8,8\n" + row)
    with pytest.raises(InputError, match=message):
        particle_csv.read(tmp_path / "p.csv")


def test_a_missing_column_is_named(tmp_path):
    (tmp_path / "p.csv").write_text("tomo,x,y,z\nt,1,2,3\n")
    with pytest.raises(InputError, match="p.csv:1: missing column"):
        particle_csv.read(tmp_path / "p.csv")
