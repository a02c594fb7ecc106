import dataclasses

import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.transform import Rotation

from deepfinder.core.errors import InputError
from deepfinder.core.particles import ParticleTable, rotations_from_euler_zxz
from deepfinder.core.segment import bin_positions
from deepfinder.core.steps.targets import make_targets
from deepfinder.core.tables import csv as particle_csv
from deepfinder.core.targets import bin_labels, mask_from_density, shape_targets, sphere_targets

SHAPE = (30, 32, 34)


def table(xyz, class_id, rotation=None):
    return ParticleTable(tomo="t", class_id=class_id, xyz=xyz, rotation=rotation)


def test_sphere_volume_and_position_follow_xyz_order():
    labels = sphere_targets(SHAPE, table([[10, 20, 5]], 1), {1: 3})
    assert labels.dtype == np.uint8 and labels.shape == SHAPE
    zyx = np.argwhere(labels == 1)
    np.testing.assert_allclose(zyx.mean(axis=0), [5, 20, 10])
    assert len(zyx) == ball_voxels(3)


def ball_voxels(radius):
    grid = np.indices((21, 21, 21)) - 10
    return np.count_nonzero(np.sum(grid**2, axis=0) <= radius**2)


def test_radius_per_class():
    labels = sphere_targets(SHAPE, table([[8, 8, 8], [24, 24, 20]], [1, 2]), {1: 2, 2: 4.5})
    assert np.count_nonzero(labels == 1) == ball_voxels(2) == 33
    assert np.count_nonzero(labels == 2) == ball_voxels(4.5)


def test_overlap_goes_to_nearest_centre_regardless_of_order():
    xyz = np.array([[10.0, 16, 15], [16, 16, 15]])
    a = sphere_targets(SHAPE, table(xyz, [1, 2]), {1: 5, 2: 5})
    b = sphere_targets(SHAPE, table(xyz[::-1], [2, 1]), {1: 5, 2: 5})
    np.testing.assert_array_equal(a, b)
    # the split plane is x = 13, halfway between the centres; the tie goes to class 1
    assert set(np.unique(a[:, :, :14])) == {0, 1}
    assert set(np.unique(a[:, :, 14:])) == {0, 2}
    assert np.count_nonzero(a == 1) + np.count_nonzero(a == 2) == np.count_nonzero(
        sphere_targets(SHAPE, table(xyz, [1, 1]), {1: 5})
    )


def test_initial_labels_kept_and_overridden_by_particles():
    initial = np.zeros(SHAPE, dtype=np.int16)
    initial[15] = 3  # a membrane plane z = 15
    labels = sphere_targets(SHAPE, table([[16, 16, 15]], 1), {1: 4}, initial_labels=initial)
    assert labels[15, 16, 16] == 1
    assert labels[15, 0, 0] == 3
    assert np.count_nonzero(labels == 3) == SHAPE[1] * SHAPE[2] - np.count_nonzero(labels[15] == 1)


def test_particles_outside_are_skipped_with_a_count():
    particles = table([[10, 10, 10], [-5, 10, 10], [10, 10, 40]], 1)
    with pytest.warns(UserWarning, match="2 of 3 particles lie outside"):
        labels = sphere_targets(SHAPE, particles, {1: 2})
    assert np.count_nonzero(labels) == 33


def test_sphere_bad_input():
    with pytest.raises(ValueError, match="> 0"):
        sphere_targets(SHAPE, table([[5, 5, 5]], 1), {1: 0})
    with pytest.raises(ValueError, match=r"class\(es\) \[2\]"):
        sphere_targets(SHAPE, table([[5, 5, 5]], 2), {1: 3})
    with pytest.raises(ValueError, match="must match"):
        sphere_targets(SHAPE, table([[5, 5, 5]], 1), {1: 3}, initial_labels=np.zeros((3, 3, 3)))
    with pytest.raises(ValueError, match="0 is background"):
        sphere_targets(SHAPE, table([[5, 5, 5]], 0), {0: 3})


def l_shaped_mask():
    """A 9^3 mask (centre index 4): an arm of 4 voxels along +x and one voxel at +2 y."""
    mask = np.zeros((9, 9, 9), dtype=bool)
    mask[4, 4, 4:9] = True  # (z, y, x): centre and x = +1..+4
    mask[4, 6, 4] = True  # y = +2
    return mask


def test_shape_identity_places_mask_at_position():
    labels = shape_targets(SHAPE, table([[12, 14, 10]], 1), {1: l_shaped_mask()})
    expected = {(10, 14, 12 + i) for i in range(5)} | {(10, 16, 12)}
    assert set(map(tuple, np.argwhere(labels == 1))) == expected


def test_shape_rotation_follows_particle_table_convention():
    """Rz(90 deg) in (x, y, z) takes template +x to tomogram +y and +y to -x."""
    rotation = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    labels = shape_targets(SHAPE, table([[12, 14, 10]], 1, rotation[None]), {1: l_shaped_mask()})
    expected = {(10, 14 + i, 12) for i in range(5)} | {(10, 14, 10)}
    assert set(map(tuple, np.argwhere(labels == 1))) == expected


@pytest.mark.parametrize("angles", [(90, 90, 0), (0, 90, 90), (180, 90, 270), (90, 180, 90)])
def test_shape_rotation_matches_forward_mapping_of_mask_voxels(angles):
    rotation = rotations_from_euler_zxz(*angles)
    position = np.array([15.0, 16, 14])
    labels = shape_targets(SHAPE, table([position], 2, rotation), {2: l_shaped_mask()})
    template_xyz = (np.argwhere(l_shaped_mask()) - 4)[:, ::-1]
    expected_xyz = np.rint(position + template_xyz @ rotation[0].T).astype(int)
    assert set(map(tuple, np.argwhere(labels == 2))) == set(map(tuple, expected_xyz[:, ::-1]))


def test_shape_sub_voxel_rotation_has_no_holes():
    mask = np.zeros((15, 15, 15), dtype=bool)
    mask[3:12, 5:10, 6:9] = True
    rotation = rotations_from_euler_zxz(33, 47, 12)
    labels = shape_targets(SHAPE, table([[16, 16, 15]], 1, rotation), {1: mask})
    filled = ndimage.binary_fill_holes(labels == 1)
    assert np.count_nonzero(filled) == np.count_nonzero(labels == 1)
    assert abs(np.count_nonzero(labels == 1) - mask.sum()) < 0.1 * mask.sum()


def test_shape_bad_input():
    with pytest.raises(ValueError, match="empty"):
        shape_targets(SHAPE, table([[5, 5, 5]], 1), {1: np.zeros((5, 5, 5))})
    with pytest.raises(ValueError, match="No mask"):
        shape_targets(SHAPE, table([[5, 5, 5]], 1), {2: l_shaped_mask()})


def test_mask_from_density():
    grid = np.indices((11, 11, 11)) - 5
    density = np.exp(-np.sum(grid**2, axis=0) / 8.0)
    mask = mask_from_density(density, 0.5)
    assert mask.dtype == bool and mask[5, 5, 5] and not mask[0, 0, 0]
    with pytest.raises(ValueError, match="lower it"):
        mask_from_density(density, 2.0)
    with pytest.raises(ValueError, match="raise it"):
        mask_from_density(density, -1.0)


def test_binned_balls_are_the_balls_of_the_binned_particles():
    particles = ParticleTable(
        tomo="t", class_id=np.array([1, 2]), xyz=np.array([[12.5, 20.5, 14.5], [36.5, 30.5, 40.5]])
    )
    labels = sphere_targets((48, 48, 50), particles, {1: 6, 2: 4})
    binned = bin_labels(labels)
    assert binned.shape == (24, 24, 25) and binned.dtype == np.uint8
    expected = sphere_targets(
        binned.shape, dataclasses.replace(particles, xyz=bin_positions(particles.xyz)), {1: 3, 2: 2}
    )
    for k in (1, 2):
        overlap = np.sum((binned == k) & (expected == k))
        assert 2 * overlap / (np.sum(binned == k) + np.sum(expected == k)) > 0.8


def test_binned_voxel_takes_the_class_of_half_its_voxels_else_background():
    labels = np.zeros((4, 4, 3), np.uint8)
    labels[0:2, 0:2, 0:2] = [[[1, 1], [1, 1]], [[2, 2], [2, 0]]]  # four of class 1, three of 2
    labels[2:4, 0:2, 0:2] = [[[3, 3], [3, 0]], [[0, 0], [0, 2]]]  # three of class 3: background
    labels[0:2, 2:4, 0:2] = [[[2, 2], [1, 1]], [[2, 2], [1, 1]]]  # four each: the lower class
    labels[:, :, 2] = 4  # an odd edge repeats its last voxel
    binned = bin_labels(labels)
    assert binned.shape == (2, 2, 2)
    assert binned[0, 0, 0] == 1 and binned[1, 0, 0] == 0 and binned[0, 1, 0] == 1
    assert np.all(binned[:, :, 1] == 4)
    with pytest.raises(InputError, match="3D"):
        bin_labels(np.zeros((4, 4)))


@pytest.mark.filterwarnings("ignore:Gimbal lock")  # identity rotations written as ZXZ angles
def test_command_line_paints_spheres_and_shapes(tmp_path):
    from deepfinder.core.cli import main
    from deepfinder.core.io import read_volume, write_volume

    write_volume(tmp_path / "tomo.mrc", np.zeros(SHAPE, np.float32), voxel_size=7.0)
    rotation = Rotation.from_euler("z", 90, degrees=True).as_matrix()
    particle_csv.write(
        tmp_path / "p.csv",
        ParticleTable(
            tomo=["tomo", "tomo", "other"],
            class_id=[1, 2, 1],
            xyz=[[12, 14, 10], [25, 20, 20], [5, 5, 5]],
            rotation=[rotation, np.eye(3), np.eye(3)],
        ),
    )
    main(
        [
            "targets",
            "--tomogram",
            str(tmp_path / "tomo.mrc"),
            "--particles",
            str(tmp_path / "p.csv"),
            "--radius",
            "1:2",
            "2:3",
            "--out",
            str(tmp_path / "spheres.mrc"),
        ]
    )
    spheres = np.asarray(read_volume(tmp_path / "spheres.mrc"))
    assert spheres.shape == SHAPE
    assert np.count_nonzero(spheres == 1) == ball_voxels(2) and spheres[20, 20, 25] == 2

    write_volume(tmp_path / "mask.mrc", l_shaped_mask().astype(np.float32))
    main(
        [
            "targets",
            "--tomogram",
            str(tmp_path / "tomo.mrc"),
            "--particles",
            str(tmp_path / "p.csv"),
            "--mask",
            f"1:{tmp_path / 'mask.mrc'}",
            f"2:{tmp_path / 'mask.mrc'}",
            "--out",
            str(tmp_path / "shapes.mrc"),
        ]
    )
    shapes = np.asarray(read_volume(tmp_path / "shapes.mrc"))
    assert set(map(tuple, np.argwhere(shapes == 1))) == (
        {(10, 14 + i, 12) for i in range(5)} | {(10, 14, 10)}
    )


def test_make_targets_refuses_particles_that_all_lie_outside_the_tomogram():
    outside = table([[100, 100, 100]], 1)
    with (
        pytest.warns(UserWarning),
        pytest.raises(InputError, match=r"no particle lies in tomogram TS_1 \(34, 32, 30\)"),
    ):
        make_targets(SHAPE, outside, radius_voxels={1: 3}, tomogram="tomogram TS_1")


def test_make_targets_paints_spheres_or_masks():
    particles = table([[10, 20, 5]], 1)
    spheres = make_targets(SHAPE, particles, radius_voxels={1: 3})
    np.testing.assert_array_equal(spheres, sphere_targets(SHAPE, particles, {1: 3}))
    cube = np.ones((3, 3, 3), bool)
    masks = make_targets(SHAPE, particles, masks={1: cube})
    assert np.count_nonzero(masks == 1) == 27
