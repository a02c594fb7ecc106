"""What the particle-table tests share: a table with several tomograms, classes and orientations,
and the comparison of a table read back."""

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from deepfinder.core.particles import ParticleTable


@pytest.fixture
def particles() -> ParticleTable:
    """Names with a space, non-ASCII letters and quote-like starts, as tools must store them."""
    rng = np.random.default_rng(4)
    return ParticleTable(
        tomo=["tomo a", "tomo a", "tömo_ß", "_t'b"],
        class_id=[1, 2, 2, 3],
        xyz=rng.uniform(0, 60, (4, 3)).round(3),
        rotation=Rotation.random(4, random_state=5).as_matrix(),
        score=[0.5, 0.25, 0.75, 1.0],
    )


def assert_same(read: ParticleTable, written: ParticleTable, atol: float = 0.01) -> None:
    """Same names, classes, positions (within ``atol`` voxels), orientations and scores."""
    assert list(read.tomo) == list(written.tomo)
    assert list(read.class_id) == list(written.class_id)
    np.testing.assert_allclose(read.xyz, written.xyz, atol=atol)
    np.testing.assert_allclose(read.rotation, written.rotation, atol=1e-4)
    np.testing.assert_allclose(read.score, written.score, atol=1e-4)
