"""Test datasets of the DeepFinder plugin, simulated on first use (never downloaded).

``DataSet.getDataSet("deepfinder_tiny")`` gives a folder in SCIPION_TESTS holding
a :class:`deepfinder.workflow.SimulatedDataset` of the simulator's tiny preset
(tomograms, ground truth, classes and per-class coordinate files).
"""

from pyworkflow.tests import DataSet

from ..workflow import SimulatedDataset


class GeneratedDataSet(SimulatedDataset, DataSet):
    """A pyworkflow DataSet whose files the simulator writes when they are absent."""

    def __init__(self, preset: str, seed: int = 0):
        name = f"deepfinder_{preset}"
        DataSet.__init__(self, name, name, files={})
        SimulatedDataset.__init__(self, self.path, preset, seed)


TINY = GeneratedDataSet("tiny")
LAMELLA = GeneratedDataSet("lamella")
