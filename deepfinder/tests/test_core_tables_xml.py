"""DeepFinder XML object lists: round trip, angle names, strict values."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from deepfinder.core.errors import InputError
from deepfinder.core.tables import xml as particle_xml
from deepfinder.tests.tables_helpers import assert_same, particles  # noqa: F401 (fixture)


def test_xml_object_list_round_trip_and_upstream_angle_names(tmp_path, particles):  # noqa: F811
    path = particle_xml.write(tmp_path / "p.xml", particles)
    assert_same(particle_xml.read(path).particles, particles)
    text = path.read_text()
    assert 'phi="' in text and 'psi="' in text and 'the="' in text


def test_xml_angles_follow_zxz_phi_the_psi(tmp_path):
    (tmp_path / "one.xml").write_text(
        '<objlist><object tomo_idx="0" class_label="4" x="1" y="2" z="3" '
        'phi="30" psi="10" the="90"/></objlist>'
    )
    table = particle_xml.read(tmp_path / "one.xml").particles
    expected = Rotation.from_euler("zxz", [30, 90, 10], degrees=True).as_matrix()
    np.testing.assert_allclose(table.rotation[0], expected, atol=1e-9)
    assert table.class_id[0] == 4 and np.isnan(table.score[0])


def test_nan_position_is_refused_with_its_object(tmp_path):
    (tmp_path / "nan.xml").write_text('<objlist><object class_label="1" x="nan" y="2" z="3"/></objlist>')
    with pytest.raises(InputError, match=r"nan.xml: object 1: attribute x: 'nan' is not a finite number"):
        particle_xml.read(tmp_path / "nan.xml")
