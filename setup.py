"""scipion-em-deepfinder: DeepFinder for Scipion, with its own engine, in Scipion's environment."""
from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent
version = {}
exec((here / "deepfinder" / "version.py").read_text(), version)

setup(
    name="scipion-em-deepfinder",
    version=version["__version__"],
    description="Find macromolecules in cryo-electron tomograms with a 3D U-net (DeepFinder), in Scipion",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="GPL-3.0-or-later",
    python_requires=">=3.11",
    packages=find_packages(exclude=["benchmarks"]),
    include_package_data=True,
    package_data={"deepfinder": ["protocols.conf", "templates/*.json.template"]},
    install_requires=[
        "scipion-pyworkflow>=3.11",
        "scipion-em>=3.11",
        "scipion-em-tomo>=3.12",
        "tensorflow>=2.16",
        "scikit-learn>=1.3",
        "scipy",
        "numpy",
        "mrcfile",
        "matplotlib",
    ],
    extras_require={
        "gpu": ["tensorflow[and-cuda]>=2.16"],
        # Other plugins' protocols that our coordinates must feed (their Python steps, no binaries).
        "test": ["pytest>=7", "scipion-app==3.8.3", "scipion-em-emantomo==3.4.3",
                 "scipion-em-dynamo==3.5.3", "scipion-em-reliontomo==4.0.5"],
    },
    entry_points={
        "pyworkflow.plugin": ["deepfinder = deepfinder"],
        "console_scripts": ["deepfinder = deepfinder.core.cli:main"],
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Bio-Informatics",
    ],
)
