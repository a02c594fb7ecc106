"""The annotate protocol driven as a user would: real X events on its window, under Xvfb.

Needs Debian's xvfb, xdotool and imagemagick (for screenshots); skipped without
them. Screenshots go to test-artifacts/ at the top of the repository.
"""

import time

import numpy as np
import pytest
from pyworkflow.tests import BaseTest, setupTestProject
from tomo.objects import Coordinate3D
from tomo.protocols import ProtImportCoordinates3D

from deepfinder.convert import coordinates_to_table
from deepfinder.figures.orthoslices import canvas_sizes, fit_scale, to_canvas
from deepfinder.protocols import DeepFinderProtAnnotate
from deepfinder.tests.projects import FormCase, import_tomograms, write_tomograms
from deepfinder.tests.virtual_display import PAUSE_S, VirtualDisplay, open_window, press, wait_closed, xdotool
from deepfinder.viewers.annotation_window import VIEW_GAP, view_area

SCREEN = (1280, 1024)
SHAPE = (24, 48, 64)  # z, y, x
VOXEL_SIZE = 10.0
BLOB = (40, 10, 12)  # x, y, z of a bright ball in tomogram ta


@pytest.mark.slow
class TestAnnotateWindow(BaseTest):
    @classmethod
    def setUpClass(cls):
        cls.display = VirtualDisplay(SCREEN, tools=("Xvfb", "xdotool", "import"))
        setupTestProject(cls)
        rng = np.random.default_rng(3)
        z, y, x = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
        volumes = {name: rng.normal(size=SHAPE).astype(np.float32) for name in ("ta", "tb")}
        volumes["ta"][(x - BLOB[0]) ** 2 + (y - BLOB[1]) ** 2 + (z - BLOB[2]) ** 2 <= 16] += 5
        write_tomograms(cls, volumes, VOXEL_SIZE)
        cls.tomograms = import_tomograms(cls, "t*.mrc", VOXEL_SIZE)
        np.savetxt(cls.getOutputPath("ta.txt"), [BLOB, [16, 30, 12]])
        cls.existing = cls.launchProtocol(
            cls.newProtocol(
                ProtImportCoordinates3D,
                filesPath=cls.getOutputPath(),
                filesPattern="ta.txt",
                importTomograms=cls.tomograms,
                boxSize=10,
            )
        ).outputCoordinates

    @classmethod
    def tearDownClass(cls):
        cls.display.stop()

    # ----------------------------------------------------------------- helpers
    def _open_window(self, protocol) -> tuple[int, int]:
        """Launch the protocol; its window's top-left corner on the screen."""
        window = open_window(self.proj, protocol, "DeepFinder annotation")
        geometry = dict(line.split("=") for line in xdotool("getwindowgeometry", "--shell", window).split())
        return int(geometry["X"]), int(geometry["Y"])

    def _screen(self, view: str, xyz) -> tuple[int, int]:
        """Screen pixel of voxel ``xyz`` in ``view`` of a freshly fitted tomogram."""
        scale = fit_scale(SHAPE, *view_area(*SCREEN))
        sizes = canvas_sizes(SHAPE, scale)
        centre = [(n - 1) / 2 for n in SHAPE[::-1]]
        column, row = to_canvas(view, np.asarray(xyz, float), centre, scale, sizes[view])
        offset = {"XY": (0, 0), "YZ": (sizes["XY"][0] + VIEW_GAP, 0), "XZ": (0, sizes["XY"][1] + VIEW_GAP)}[
            view
        ]
        return (self.origin[0] + offset[0] + int(column), self.origin[1] + offset[1] + int(row))

    def _click(self, view, xyz, button=1):
        x, y = self._screen(view, xyz)
        xdotool("mousemove", "--sync", x, y, "click", button)
        time.sleep(PAUSE_S)

    def _drag(self, view, start, stop):
        (x0, y0), (x1, y1) = self._screen(view, start), self._screen(view, stop)
        xdotool("mousemove", "--sync", x0, y0, "mousedown", 1)
        for t in (0.3, 0.7, 1.0):
            xdotool("mousemove", "--sync", int(x0 + t * (x1 - x0)), int(y0 + t * (y1 - y0)))
            time.sleep(0.1)
        xdotool("mouseup", 1)
        time.sleep(PAUSE_S)

    def _screenshot(self, name) -> np.ndarray:
        return self.display.screenshot(f"annotate_{name}")

    def _particles(self, coordinates):
        table = coordinates_to_table(coordinates, VOXEL_SIZE)
        order = np.lexsort((table.xyz[:, 0], table.class_id, table.tomo))
        return table.select(order)

    # ----------------------------------------------------------------- test
    def test_annotate_two_classes_in_two_sittings(self):
        protocol = self.newProtocol(
            DeepFinderProtAnnotate,
            inputTomograms=self.tomograms,
            inputCoordinates=[self.existing],
            classNames="ribosome, proteasome",
            radii="40, 30",
        )
        self.origin = self._open_window(protocol)
        opened = self._screenshot("1_opened")
        # The ball shows where the voxel-to-screen mapping says (slice z = 11 cuts it).
        blob_x, blob_y = self._screen("XY", BLOB)
        self.assertGreater(opened[blob_y, blob_x], 200)
        self.assertLess(opened[self._screen("XY", (20, 40, 11))[::-1]], 240)

        z = 11  # the XY slice shown at the start
        press("2")
        self._click("XY", (20, 40, z))  # proteasome
        self._click("XY", (50, 20, z))  # proteasome, then moved
        self._drag("XY", (50, 20, z), (55, 35, z))
        press("1")
        self._click("XY", (30, 15, z))  # ribosome
        self._click("XY", (16, 30, z), button=3)  # delete an existing ribosome
        self._click("XY", (5, 5, z))  # added by mistake ...
        press("ctrl+z")  # ... and undone
        self._screenshot("2_ta_annotated")

        press("Next")  # tomogram tb
        self._click("XZ", (10, 23, 5))  # ribosome in the XZ view (slice y = 23)
        press("2")
        # The click above moved the YZ view to x = 10: a proteasome there.
        self._click("YZ", (10, 40, 18))
        self._screenshot("3_tb_annotated")
        press("ctrl+s")
        press("ctrl+q")
        protocol = wait_closed(self.proj, protocol)

        expected = {  # tomo, class: positions (x, y, z)
            ("ta", 1): [BLOB, (30, 15, z)],
            ("ta", 2): [(20, 40, z), (55, 35, z)],
            ("tb", 1): [(10, 23, 5)],
            ("tb", 2): [(10, 40, 18)],
        }
        self._check_outputs(protocol, expected)

        # Second sitting: the window reopens with everything saved; nothing is lost.
        self.origin = self._open_window(protocol)
        self._screenshot("4_reopened")
        self._click("XY", (45, 40, z))  # one more ribosome in ta
        press("ctrl+q")
        protocol = wait_closed(self.proj, protocol)
        expected[("ta", 1)].append((45, 40, z))
        self._check_outputs(protocol, expected)

    def _check_outputs(self, protocol, expected):
        everything = self._particles(protocol.annotatedCoordinates)
        self.assertEqual(len(everything), sum(map(len, expected.values())))
        for (tomo, class_id), positions in expected.items():
            found = everything.of_tomogram(tomo).of_class(class_id)
            np.testing.assert_allclose(
                found.xyz, sorted(positions), atol=0.5, err_msg=f"{tomo}, class {class_id}"
            )
        for name, class_id, box in (("ribosome", 1, 10), ("proteasome", 2, 8)):
            output = getattr(protocol, f"coordinates_{name}")
            self.assertEqual(output.getBoxSize(), box)
            self.assertEqual(output.getSamplingRate(), VOXEL_SIZE)
            self.assertEqual(len(output), len(everything.of_class(class_id)))
            self.assertEqual(set(output.getUniqueValues(Coordinate3D.TOMO_ID_ATTR)), {"ta", "tb"})


class TestAnnotateForm(FormCase):
    """Bad input is refused before any window opens."""

    protocol_class = DeepFinderProtAnnotate

    def test_radii_must_match_the_classes(self):
        for radii in ("", "-5", "40, 30, 20"):
            errors = self._errors(inputTomograms=self.tomos_a, classNames="ribosome, proteasome", radii=radii)
            self.assertIn("one per class: ribosome, proteasome", errors, radii)
        self.assertEqual(self._errors(inputTomograms=self.tomos_a, radii="40"), "")

    def test_existing_particles_must_belong_to_the_tomograms(self):
        errors = self._errors(inputTomograms=self.tomos_b, inputCoordinates=[self.coords_a], radii="40")
        self.assertIn("not in the input tomograms (ua)", errors)
