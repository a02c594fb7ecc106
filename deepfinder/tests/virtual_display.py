"""A private X display (Xvfb) for the tests that open real Tk windows."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import unittest


class VirtualDisplay:
    """Start Xvfb on a free display number and point DISPLAY at it; ``stop`` restores DISPLAY.

    Raises ``unittest.SkipTest`` naming the Debian packages when a tool is missing.
    Subprocesses (e.g. protocol runs) inherit the display through the environment.
    """

    def __init__(self, size=(1280, 1024), tools=("Xvfb",)):
        missing = [tool for tool in tools if not shutil.which(tool)]
        if missing:
            raise unittest.SkipTest(
                f"{', '.join(missing)} not installed (Debian: apt-get install xvfb xdotool imagemagick)"
            )
        self.number = next(
            n
            for n in range(90, 500)
            if not os.path.exists(f"/tmp/.X11-unix/X{n}") and not os.path.exists(f"/tmp/.X{n}-lock")
        )
        self.process = subprocess.Popen(
            ["Xvfb", f":{self.number}", "-screen", "0", f"{size[0]}x{size[1]}x24", "-nolisten", "tcp"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(100):
            if os.path.exists(f"/tmp/.X11-unix/X{self.number}"):
                break
            time.sleep(0.1)
        self.previous = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = f":{self.number}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = self.previous
