"""IMOD models: the models 3dmod wrote read as they are, ours read back by us and by imodmodel."""

import imodmodel
import numpy as np
import pytest
from imodmodel import ImodModel
from imodmodel.models import MINX

from deepfinder.core.errors import InputError
from deepfinder.core.particles import ParticleTable
from deepfinder.core.tables import imod
from deepfinder.core.tables.geometry import TomogramGeometry
from deepfinder.tests.realformats import REAL_FORMATS, needs_real_formats


@needs_real_formats
@pytest.mark.parametrize(
    ("name", "points_per_object", "voxel_size"),
    [
        ("imod_cryocat_correct189.mod", [74], None),
        ("imod_point_sizes_example.mod", [4, 9, 5], 12.399),
        ("imod_slicer_angle_example.mod", [4], 16.145),
    ],
)
def test_models_3dmod_wrote_read_every_point(name, points_per_object, voxel_size):
    read = imod.read(REAL_FORMATS / name)
    table = read.particles
    np.testing.assert_array_equal(np.bincount(table.class_id)[1:], points_per_object)
    assert set(table.tomo) == {name.removesuffix(".mod")}
    assert np.all(table.xyz >= 0) and np.all(table.xyz < 1400)
    assert read.voxel_size == (None if voxel_size is None else pytest.approx(voxel_size, abs=1e-3))


@needs_real_formats
def test_voxel_centres_are_half_a_voxel_from_model_points():
    path = REAL_FORMATS / "imod_cryocat_correct189.mod"
    frame = imodmodel.read(path)
    np.testing.assert_allclose(imod.read(path).particles.xyz, frame[["x", "y", "z"]] - [0.5, 0.5, 0])


@needs_real_formats
def test_subvolume_offset_is_the_origin_of_the_image_in_voxels():
    # The model was drawn on an image of origin (-850, 0, 950) A at 1 A per pixel.
    path = REAL_FORMATS / "imod_cryocat_correct189.mod"
    moved = imod.read(path, subvolume_offset=True).particles.xyz - imod.read(path).particles.xyz
    np.testing.assert_allclose(moved, np.broadcast_to([850, 0, -950], moved.shape))


def particles(tomo: str = "TS 01 Ä") -> ParticleTable:
    """Particles in class order: a model keeps the points of each class (object) together."""
    rng = np.random.default_rng(2)
    return ParticleTable(tomo=tomo, class_id=[1, 1, 3, 3, 3], xyz=rng.uniform(0, 300, (5, 3)))


def test_round_trip_through_our_reader(tmp_path):
    table = particles()
    read = imod.read(imod.write(tmp_path / "picks.mod", table, voxel_size=13.5))
    np.testing.assert_allclose(read.particles.xyz, table.xyz, atol=0.01)
    np.testing.assert_array_equal(read.particles.class_id, table.class_id)
    assert set(read.particles.tomo) == {"TS 01 Ä"}
    assert read.voxel_size == 13.5


def test_round_trip_through_imodmodel(tmp_path):
    table = particles()
    geometry = {"TS 01 Ä": TomogramGeometry(size_xyz=(400, 380, 120), voxel_size=13.5)}
    path = imod.write(tmp_path / "picks.mod", table, voxel_size=13.5, tomograms=geometry)
    frame = imodmodel.read(path)
    np.testing.assert_allclose(frame[["x", "y", "z"]], table.xyz + [0.5, 0.5, 0], atol=0.01)
    np.testing.assert_array_equal(frame["object_id"] + 1, table.class_id)
    header = ImodModel.from_file(path).header
    assert (header.xmax, header.ymax, header.zmax) == (400, 380, 120)
    assert header.pixelsize == pytest.approx(13.5) and header.units == -10


def test_particles_of_several_tomograms_are_refused(tmp_path):
    table = ParticleTable.concat([particles("a"), particles("b")])
    with pytest.raises(InputError, match="one model per tomogram"):
        imod.write(tmp_path / "two.mod", table)
    assert not (tmp_path / "two.mod").exists()


def test_file_that_is_not_a_model_is_refused(tmp_path):
    path = tmp_path / "notes.mod"
    path.write_text("not a model\n")
    with pytest.raises(InputError, match="notes.mod: not a readable IMOD model"):
        imod.read(path)


def test_point_that_is_not_finite_is_refused(tmp_path):
    path = imod.write(tmp_path / "picks.mod", particles())
    model = ImodModel.from_file(path)
    model.objects[0].contours[0].points[1, 2] = np.nan
    model.to_file(path)
    with pytest.raises(InputError, match="picks.mod:point 2:z"):
        imod.read(path)


def test_offset_of_a_model_without_image_origin_is_refused(tmp_path):
    path = imod.write(tmp_path / "picks.mod", particles())
    with pytest.raises(InputError, match="no MINX chunk"):
        imod.read(path, subvolume_offset=True)
    model = ImodModel.from_file(path)
    model.minx = MINX(
        oscale=(1, 1, 1),
        otrans=(0, 0, 0),
        orot=(0, 0, 0),
        cscale=(2, 2, 2),
        ctrans=(-20, 0, 10),
        crot=(0, 0, 0),
    )
    model.to_file(path)
    moved = imod.read(path, subvolume_offset=True).particles.xyz - imod.read(path).particles.xyz
    np.testing.assert_allclose(moved, np.broadcast_to([10, 0, -5], moved.shape))
