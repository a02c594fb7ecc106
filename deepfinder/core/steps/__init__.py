"""One function per step of the workflow, taking the step's settings and files.

The command line (:mod:`deepfinder.core.cli`) and the Scipion protocols call these, so a
step's checks and outputs are the same whichever way it is run.
"""
