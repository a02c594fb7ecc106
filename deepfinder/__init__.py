"""DeepFinder for Scipion: find macromolecules in cryo-electron tomograms with a 3D U-net.

The engine (``deepfinder.core``) runs in Scipion's own Python environment:
no conda environment, no separate interpreter.
"""

import os

import pwem
import pyworkflow.utils as pwutils

from .constants import DEEPFINDER_DEVICE, DEEPFINDER_PRECISION
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
        # "auto" (mixed bfloat16 on CPUs that compute it natively, else float32), "float32", "bfloat16".
        cls._defineVar(DEEPFINDER_PRECISION, "auto")

    @classmethod
    def getEnviron(cls) -> pwutils.Environ:
        """Environment of engine processes: this one, quiet TensorFlow, no GPU with DEEPFINDER_DEVICE=cpu.

        Each step's GPUs are given on its command line (``--gpus``, see ``protocol_base.run_engine``).
        """
        environ = pwutils.Environ(os.environ)
        environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
        if cls.getVar(DEEPFINDER_DEVICE) == "cpu":
            environ["CUDA_VISIBLE_DEVICES"] = ""
        return environ

    @classmethod
    def precisionErrors(cls) -> list[str]:
        """A form error if the DEEPFINDER_PRECISION variable holds an unknown value."""
        from .core.model import PRECISIONS

        precision = cls.getVar(DEEPFINDER_PRECISION)
        if precision in PRECISIONS:
            return []
        return [
            f"The Scipion variable {DEEPFINDER_PRECISION} is {precision!r}: set it to one of "
            f"{', '.join(PRECISIONS)} in the Scipion configuration or the environment."
        ]

    @classmethod
    def defineBinaries(cls, env):
        # The engine is pure Python and installed with the plugin: nothing to build.
        pass
