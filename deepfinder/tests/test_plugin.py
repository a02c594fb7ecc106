"""The plugin as Scipion sees it: discovered through its entry point, protocols listed."""

import configparser
import json
from pathlib import Path

import mrcfile
import numpy as np
import pwem
from PIL import Image
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.protocols import ProtImportTomograms

import deepfinder
from deepfinder.protocols import PROTOCOL_CLASSES


def test_plugin_is_discovered():
    plugins = pwem.Domain.getPlugins()
    assert "deepfinder" in plugins
    assert pwem.Domain.getPluginModule("deepfinder").Plugin is deepfinder.Plugin


def test_protocols_are_discovered_and_prefixed():
    protocols = pwem.Domain.getProtocols()
    names = {cls.__name__ for cls in PROTOCOL_CLASSES}
    assert names, "the plugin defines no protocol"
    assert names <= set(protocols), f"not discovered: {names - set(protocols)}"
    assert all(name.startswith("DeepFinder") for name in names)


def test_protocol_forms_find_the_plugin_logo():
    for cls in PROTOCOL_CLASSES:
        logo = cls.getPluginLogoPath()
        assert logo and Path(logo).is_file(), f"{cls.__name__}: no logo at {logo}"
        with Image.open(logo) as image:
            assert image.format == "PNG"
            assert 32 <= min(image.size) <= 256


def _menu_protocols(tree) -> set[str]:
    if isinstance(tree, list):
        return set().union(*map(_menu_protocols, tree))
    found = {tree["value"]} if tree.get("tag") == "protocol" else set()
    return found | _menu_protocols(tree.get("children", []))


def test_menu_lists_every_protocol_under_tomo_sections():
    config = configparser.ConfigParser()
    config.read(Path(deepfinder.__file__).parent / "protocols.conf")
    menu = json.loads(config["PROTOCOLS"]["Tomography"])
    assert {section["text"] for section in menu} <= {"Particles", "Tomograms"}
    assert _menu_protocols(menu) == {cls.__name__ for cls in PROTOCOL_CLASSES}


class TestImportTomogram(BaseTest):
    """An MRC written with mrcfile goes into a project with tomo's import protocol."""

    @classmethod
    def setUpClass(cls):
        setupTestProject(cls)

    def test_import_keeps_dimensions_and_sampling(self):
        path = self.getOutputPath("tomo_a.mrc")
        with mrcfile.new(path) as mrc:
            mrc.set_data(np.random.default_rng(0).normal(size=(24, 40, 32)).astype(np.float32))
            mrc.voxel_size = 13.7
        prot = self.newProtocol(
            ProtImportTomograms, filesPath=self.getOutputPath(), filesPattern="tomo_a.mrc", samplingRate=13.7
        )
        self.launchProtocol(prot)
        tomograms = prot.Tomograms
        self.assertEqual(tomograms.getSize(), 1)
        tomogram = tomograms.getFirstItem()
        self.assertEqual(tomogram.getDim(), (32, 40, 24))
        self.assertAlmostEqual(tomogram.getSamplingRate(), 13.7, places=3)
        self.assertEqual(tomogram.getTsId(), "tomo_a")


def test_the_plugin_manager_finds_the_installed_plugin_and_no_binaries():
    # What `scipion3 installp -p <clone> --devel` and the plugin manager read after `pip install -e`.
    from scipion.install.plugin_funcs import PluginInfo

    plugin = PluginInfo(pipName="scipion-em-deepfinder", remote=False)
    assert plugin.isInstalled()
    assert plugin.getDirName() == "deepfinder"
    assert isinstance(plugin.getPluginClass(), deepfinder.Plugin)
    assert plugin.pipVersion == deepfinder.__version__
    assert plugin.getBinVersions() == []
