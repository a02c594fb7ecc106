"""DeepFinder for Scipion: find macromolecules in cryo-electron tomograms with a 3D U-net.

The engine (``deepfinder.core``) runs in Scipion's own Python environment:
no conda environment, no separate interpreter.
"""
import pwem

from .constants import DEEPFINDER_DEVICE
from .version import __version__

_logo = "deepfinder_logo.png"
_references = ["Moebel2021"]


class Plugin(pwem.Plugin):
    _url = "https://github.com/scipion-em/scipion-em-deepfinder"
    _supportedVersions = [__version__]

    @classmethod
    def _defineVariables(cls):
        # "gpu" (default: use GPUs when TensorFlow sees them) or "cpu" (hide them).
        cls._defineVar(DEEPFINDER_DEVICE, "gpu")

    @classmethod
    def getEnviron(cls, gpu_ids: str | None = None) -> dict:
        """Environment for engine runs: quiet TensorFlow, chosen GPUs (or none)."""
        environ = {"TF_CPP_MIN_LOG_LEVEL": "2"}
        if cls.getVar(DEEPFINDER_DEVICE) == "cpu":
            environ["CUDA_VISIBLE_DEVICES"] = ""
        elif gpu_ids is not None:
            environ["CUDA_VISIBLE_DEVICES"] = gpu_ids
        return environ

    @classmethod
    def defineBinaries(cls, env):
        # The engine is pure Python and installed with the plugin: nothing to build.
        pass
