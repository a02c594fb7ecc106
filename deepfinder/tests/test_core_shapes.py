"""Particle shapes: built-in procedural shapes, MRC templates, rotation convention."""

import mrcfile
import numpy as np
import pytest
from scipy import ndimage

from deepfinder.core.particles import rotations_from_euler_zxz
from deepfinder.core.shapes import SHAPE_NAMES, load_shape, procedural_shape, rotate_density


def _principal_lengths(mask):
    coordinates = np.argwhere(mask).astype(float)
    return np.sqrt(np.linalg.eigvalsh(np.cov(coordinates.T)))


def test_procedural_shapes_differ_in_size_and_topology():
    shapes = {name: procedural_shape(name, voxel_size=12.0) for name in SHAPE_NAMES}
    volumes = {name: np.count_nonzero(shape.mask) for name, shape in shapes.items()}
    assert volumes["ribosome"] > 2 * volumes["ring"] > 2 * volumes["globule"]
    for shape in shapes.values():
        assert shape.density.shape[0] % 2 == 1
        assert np.isclose(shape.density[shape.mask].mean(), 1.0, atol=1e-3)
    centre = shapes["ring"].density.shape[0] // 2
    assert not shapes["ring"].mask[centre, centre, centre]  # a hole: the ring has genus 1
    assert ndimage.label(~shapes["ring"].mask)[1] == 1  # ... but no enclosed cavity
    lengths = _principal_lengths(shapes["rod"].mask)
    assert lengths[-1] > 3 * lengths[0]
    assert 7 < shapes["ribosome"].radius_voxels < 10


def test_rotation_follows_the_particle_table_convention():
    rod = procedural_shape("rod", voxel_size=12.0)  # long axis along z in the template frame
    # Rz(psi) Rx(theta) Rz(phi) with theta = 90, psi = 90 takes z to x.
    rotation = rotations_from_euler_zxz(0.0, 90.0, 90.0)[0]
    assert np.allclose(rotation @ [0, 0, 1], [1, 0, 0], atol=1e-9)
    rotated = rotate_density(rod.density, rotation) > rod.threshold
    z, y, x = np.nonzero(rotated)
    assert np.ptp(x) > 3 * np.ptp(z) and np.ptp(x) > 3 * np.ptp(y)


def _write_sphere(path, voxel_size, radius_a, size=48, header_voxel_size=True):
    grid = (np.indices((size,) * 3) - size // 2) * voxel_size
    data = (np.sqrt((grid**2).sum(0)) < radius_a).astype(np.float32) * 3.0
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(data)
        if header_voxel_size:
            mrc.voxel_size = voxel_size


def test_template_is_resampled_to_the_voxel_size(tmp_path):
    path = tmp_path / "sphere.mrc"
    _write_sphere(path, voxel_size=5.0, radius_a=50.0)
    shape = load_shape(path, voxel_size=10.0, threshold_fraction=0.5)
    assert shape.name == "sphere"
    assert shape.radius_voxels == pytest.approx(5.0, abs=0.4)
    centre = shape.density.shape[0] // 2
    assert shape.mask[centre, centre, centre]


def test_template_errors(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        load_shape(tmp_path / "missing.mrc", voxel_size=10.0)
    path = tmp_path / "no_header.mrc"
    _write_sphere(path, voxel_size=5.0, radius_a=50.0, header_voxel_size=False)
    with pytest.raises(ValueError, match="template_voxel_size"):
        load_shape(path, voxel_size=10.0)
    assert load_shape(path, voxel_size=10.0, template_voxel_size=5.0).radius_voxels > 4
    with pytest.raises(ValueError, match="Unknown shape"):
        procedural_shape("banana", voxel_size=10.0)
