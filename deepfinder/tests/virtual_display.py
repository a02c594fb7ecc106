"""A private X display (Xvfb) for the tests that open real Tk windows, and the driving of those windows.

The annotate and review tests launch their protocol (whose run opens the
window), type and click with xdotool, take screenshots with ImageMagick's
``import`` and wait for the run to save and close.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import unittest
from pathlib import Path

import numpy as np
from PIL import Image
from pyworkflow.protocol import STATUS_FAILED, STATUS_FINISHED, STATUS_INTERACTIVE, getProtocolFromDb

#: Screenshots of the window tests, at the top of the repository.
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT_S = 120
#: Time for a window to draw after a key or a click.
PAUSE_S = 0.3


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
        self.size = size
        # Xvfb chooses the display and writes its number once it accepts connections: two test
        # processes starting displays at the same time cannot pick the same free number.
        number_out, number_in = os.pipe()
        self.process = subprocess.Popen(
            [
                "Xvfb",
                "-displayfd",
                str(number_in),
                "-screen",
                "0",
                f"{size[0]}x{size[1]}x24",
                "-nolisten",
                "tcp",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(number_in,),
        )
        os.close(number_in)
        with os.fdopen(number_out) as numbers:
            line = numbers.readline()
        if not line.strip().isdigit():
            self.process.kill()
            raise RuntimeError(f"Xvfb did not start (exit code {self.process.wait(timeout=10)})")
        self.number = int(line)
        self.previous = os.environ.get("DISPLAY")
        os.environ["DISPLAY"] = f":{self.number}"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.previous is None:
            os.environ.pop("DISPLAY", None)
        else:
            os.environ["DISPLAY"] = self.previous

    def screenshot(self, name: str) -> np.ndarray:
        """Save the whole screen as ``test-artifacts/<name>.png``; return it in grey levels."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        subprocess.run(["import", "-window", "root", str(path)], check=True, timeout=TIMEOUT_S)
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"))
        if grey.shape[::-1] != tuple(self.size):
            raise AssertionError(f"{path} is {grey.shape[::-1]}, not the screen's {self.size}")
        return grey


def xdotool(*args) -> str:
    """Run xdotool with ``args``; its output."""
    return subprocess.run(
        ["xdotool", *map(str, args)], check=True, capture_output=True, text=True, timeout=TIMEOUT_S
    ).stdout


def press(*keys: str) -> None:
    """Type each key (xdotool's names, e.g. ``a``, ``shift+Right``, ``ctrl+q``) and let the window draw."""
    for key in keys:
        xdotool("key", key)
        time.sleep(PAUSE_S)


def open_window(project, protocol, title: str) -> str:
    """Launch ``protocol``, whose run opens a window named ``title``; the window's id once it is drawn."""
    project.launchProtocol(protocol, wait=False)
    window = xdotool("search", "--sync", "--onlyvisible", "--name", title).split()[0]
    time.sleep(1.0)  # let the first rendering finish
    return window


def wait_closed(project, protocol):
    """``protocol`` as its run left it once its window is closed (saved, waiting for 'Continue').

    Raises AssertionError with the end of the run's log if the run did not get there.
    """
    deadline = time.time() + TIMEOUT_S
    while time.time() < deadline:
        time.sleep(1)
        # A fresh copy from the run's database: the outputs were rewritten by the run.
        protocol = getProtocolFromDb(project.path, protocol.getDbPath(), protocol.getObjId())
        protocol.getProject().closeMapper()
        protocol.closeMappers()
        if protocol.getStatus() in (STATUS_INTERACTIVE, STATUS_FINISHED, STATUS_FAILED):
            break
    if protocol.getStatus() != STATUS_INTERACTIVE:
        log = Path(project.path, protocol.getStdoutLog()).read_text().splitlines()[-30:]
        raise AssertionError(f"run ended {protocol.getStatus()}:\n" + "\n".join(log))
    return protocol
