import numpy as np
import pytest

from deepfinder.core.consensus import consensus
from deepfinder.core.particles import ParticleTable


def _table(xyz, class_id=1, tomo="t", score=None):
    return ParticleTable(tomo=tomo, class_id=class_id, xyz=xyz, score=score)


def test_two_pickers_split_into_shared_and_own_particles():
    template_matching = _table([[10, 10, 10], [50, 50, 20], [80, 20, 30]], score=[0.3, 0.4, 0.5])
    deepfinder = _table([[11, 10, 9], [50, 52, 20], [30, 30, 30], [90, 90, 10]], score=[0.9, 0.2, 0.8, 0.7])
    result = consensus([template_matching, deepfinder], tolerance_voxels=4)

    assert len(result.union) == 5
    shared = result.intersection()
    np.testing.assert_allclose(shared.xyz, [[10.5, 10, 9.5], [50, 51, 20]])
    np.testing.assert_allclose(shared.score, [0.9, 0.4])
    np.testing.assert_allclose(result.only(0).xyz, [[80, 20, 30]])
    np.testing.assert_allclose(result.only(1).xyz, [[30, 30, 30], [90, 90, 10]])


def test_particles_of_other_classes_or_tomograms_never_match():
    a = ParticleTable.concat([_table([[10, 10, 10]], class_id=1), _table([[40, 40, 40]], tomo="u")])
    b = ParticleTable.concat([_table([[10, 10, 10]], class_id=2), _table([[40, 40, 40]], tomo="v")])
    result = consensus([a, b], tolerance_voxels=5)
    assert len(result.intersection()) == 0
    assert len(result.only(0)) == 2 and len(result.only(1)) == 2


def test_matching_is_one_to_one_across_three_pickers():
    a = _table([[10, 10, 10]])
    b = _table([[10, 10, 11], [10, 10, 9]])
    c = _table([[10, 11, 10]])
    result = consensus([a, b, c], tolerance_voxels=3)
    assert len(result.union) == 2
    assert result.found_by.sum(axis=1).tolist() == [3, 1]


def test_bad_tolerance_is_refused():
    with pytest.raises(ValueError, match="tolerance_voxels must be > 0"):
        consensus([_table([[1, 1, 1]])], tolerance_voxels=0)
