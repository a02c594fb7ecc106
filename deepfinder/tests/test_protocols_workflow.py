"""The packaged workflow template loads into a project and runs end to end."""

from pathlib import Path

import pwem
import pytest
from pyworkflow.tests import BaseTest, setupTestProject

from deepfinder.tests import TINY

pytestmark = pytest.mark.slow


class TestWorkflowTemplate(BaseTest):
    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_template_runs_on_the_tiny_dataset(self):
        plugin = pwem.Domain.getPlugins()["deepfinder"]._pluginInstance
        (template,) = [t for t in plugin.getTemplates() if t.getObjId() == "deepfinder-deepfinder_pipeline"]
        template.replaceEnvVariables()
        template.parseContent()
        ribosome = TINY.classes()[0]
        radius_A = ribosome["radius_voxels"] * TINY.voxel_size()
        values = {
            "tomogramsFolder": TINY.getPath(),
            "trainPattern": "tomo_00[01].mrc",
            "testPattern": "tomo_002.mrc",
            "trainSamplingRate": TINY.voxel_size(),
            "testSamplingRate": TINY.voxel_size(),
            "trainCoordinates": f"{TINY.getPath()}/class{ribosome['id']}",
            "referenceCoordinates": f"{TINY.getPath()}/class{ribosome['id']}",
            "trainBoxSize": 20,
            "referenceBoxSize": 20,
            "className": ribosome["name"],
            "radius": radius_A,
            "patchSize": 32,
            "batchSize": 2,
            "epochs": 2,
            "stepsPerEpoch": 4,
        }
        for alias, value in values.items():
            self.assertGreater(template.setParamValue(alias, str(value)), 0, alias)
        self.proj.loadProtocols(template.createTemplateFile())

        runs = sorted(self.proj.getRuns(), key=lambda run: run.getObjId())
        self.assertEqual(
            [run.getClassName() for run in runs][-5:],
            [
                "DeepFinderProtGenerateTargets",
                "DeepFinderProtTrain",
                "DeepFinderProtSegment",
                "DeepFinderProtCluster",
                "DeepFinderProtEvaluate",
            ],
        )
        for run in runs:
            run = self.proj.getProtocol(run.getObjId())
            self.launchProtocol(run)
        evaluate = self.proj.getProtocol(runs[-1].getObjId())
        table = Path(evaluate._getExtraPath("evaluation.txt")).read_text()
        self.assertIn(ribosome["name"], table)
