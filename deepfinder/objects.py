"""Scipion objects of the DeepFinder plugin."""

import json

import pyworkflow.object as pwobj
from pwem.objects import EMObject


class DeepFinderModel(EMObject):
    """A trained DeepFinder U-net: what training produces and segmentation consumes.

    Holds the weights file (``*.weights.h5``; its JSON metadata lies beside it),
    the class names (background first), the training patch size, the sampling
    rate (A/px) of the training tomograms and the training history file.
    """

    def __init__(
        self, weightsFile=None, classNames=(), patchSize=None, samplingRate=None, historyFile=None, **kwargs
    ):
        super().__init__(**kwargs)
        self._weightsFile = pwobj.String(weightsFile)
        self._classNames = pwobj.String(json.dumps(list(classNames)))
        self._patchSize = pwobj.Integer(patchSize)
        self._samplingRate = pwobj.Float(samplingRate)
        self._historyFile = pwobj.String(historyFile)

    def getWeightsFile(self) -> str:
        return self._weightsFile.get()

    def getClassNames(self) -> list[str]:
        """Class names, background (label 0) first."""
        return json.loads(self._classNames.get() or "[]")

    def getNumberOfClasses(self) -> int:
        """Output classes of the network, background included."""
        return len(self.getClassNames())

    def getPatchSize(self) -> int:
        return self._patchSize.get()

    def getSamplingRate(self) -> float:
        return self._samplingRate.get()

    def getHistoryFile(self) -> str:
        return self._historyFile.get()

    def getFiles(self):
        return {path for path in (self.getWeightsFile(), self.getHistoryFile()) if path}

    def __str__(self):
        names = ", ".join(self.getClassNames()[1:])
        return (
            f"DeepFinderModel ({names}; patch {self.getPatchSize()} px, "
            f"{self.getSamplingRate() or 0:.2f} A/px)"
        )


class DeepFinderNet(DeepFinderModel):
    """A model trained or loaded with the DeepFinder 3.x plugin, as its projects store it.

    3.x kept the weights file and the class count (background included), no class names,
    patch size or sampling rate: the classes are named class1, class2, ..., and segment
    cannot warn when the tomograms are at another sampling rate than the training ones.
    """

    def __init__(self, path=None, noClasses=None, **kwargs):
        super().__init__(**kwargs)
        self._path = pwobj.String(path)
        self._nbOfClasses = pwobj.Integer(noClasses)

    def getWeightsFile(self) -> str:
        return self._path.get()

    def getClassNames(self) -> list[str]:
        """Class names, background first: ``class1``, ``class2``, ... (3.x stored none)."""
        return ["background"] + [f"class{i}" for i in range(1, self._nbOfClasses.get() or 0)]
