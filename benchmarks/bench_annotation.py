"""The annotation window on a real-size tomogram: time to first picture, slice change, zoom, memory.

Writes a 928 x 928 x 464 float32 tomogram (1.6 GB: noise with bright balls)
to a temporary folder, opens it in :class:`AnnotationWindow` on a private
Xvfb display and times, each until Tk has drawn the result:

- the first picture (window built, three views drawn), with the file's pages
  first dropped from the page cache (cold) and then again (warm);
- changing the slice of each view (a few steps of the mouse wheel);
- redrawing after zooming in twice and back out.

Prints the figures and the process's memory (resident set: anonymous memory
and pages of the memory-mapped file). The tomogram is deleted at the end.
Needs Xvfb. Usage: python benchmarks/bench_annotation.py [--shape Z Y X] [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import tkinter as tk
from pathlib import Path

import numpy as np

from deepfinder.core import io
from deepfinder.core.annotation import ParticleClass
from deepfinder.core.particles import ParticleTable
from deepfinder.tests.virtual_display import VirtualDisplay
from deepfinder.viewers.annotation_window import AnnotationWindow

SHAPE = (464, 928, 928)
VOXEL_SIZE = 10.0


def write_tomogram(path: Path, shape, seed: int = 0) -> ParticleTable:
    """Noise with bright balls of radius 8, written slab by slab; the balls' positions."""
    rng = np.random.default_rng(seed)
    n_balls = 200
    xyz = rng.uniform(10, np.array(shape[::-1]) - 10, size=(n_balls, 3))
    with io.create_volume(path, shape, np.float32, VOXEL_SIZE) as mrc:
        slab = 16
        for start in range(0, shape[0], slab):
            stop = min(shape[0], start + slab)
            block = rng.standard_normal((stop - start, *shape[1:]), dtype=np.float32)
            for x, y, z in xyz[(xyz[:, 2] > start - 8) & (xyz[:, 2] < stop + 8)]:
                z0, z1 = max(start, int(z) - 8), min(stop, int(z) + 9)
                y0, x0 = int(y) - 8, int(x) - 8
                zz, yy, xx = np.mgrid[z0:z1, y0 : y0 + 17, x0 : x0 + 17]
                ball = (xx - x) ** 2 + (yy - y) ** 2 + (zz - z) ** 2 <= 64
                block[zz[ball] - start, yy[ball], xx[ball]] += 3.0
            mrc.data[start:stop] = block
        mrc.flush()
    return ParticleTable(tomo="big", class_id=1, xyz=xyz)


def drop_from_page_cache(path: Path) -> None:
    """Evict the file's clean pages, so that the next read comes from disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def memory_mb() -> dict[str, float]:
    """Resident memory of this process (MB): total, anonymous, file-backed, and the peak."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return fields


def timed(action, root: tk.Tk) -> float:
    """Seconds for ``action`` and Tk's drawing of its result."""
    start = time.perf_counter()
    action()
    root.update()
    return time.perf_counter() - start


def open_window(path: Path, particles: ParticleTable) -> tuple[tk.Tk, AnnotationWindow, float]:
    start = time.perf_counter()
    root = tk.Tk()
    window = AnnotationWindow(
        root,
        [("big", str(path))],
        [ParticleClass("ball", "#e6194b", 8.0)],
        {"big": particles},
        VOXEL_SIZE,
        on_change=lambda *args: None,
        on_save=lambda: None,
    )
    root.update()
    return root, window, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shape", type=int, nargs=3, default=SHAPE, metavar=("Z", "Y", "X"))
    parser.add_argument("--keep", type=Path, help="write the tomogram here and keep it")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="bench_annotation_"))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "big.mrc"
    display = VirtualDisplay((1600, 1200))
    try:
        start = time.perf_counter()
        particles = write_tomogram(path, tuple(args.shape))
        print(
            f"tomogram {args.shape[::-1]} (x y z) float32, {path.stat().st_size / 1e9:.2f} GB, "
            f"written in {time.perf_counter() - start:.1f} s"
        )
        print(f"memory before opening: {memory_mb()}")
        drop_from_page_cache(path)
        root, window, cold = open_window(path, particles)
        print(f"first picture, file not in the page cache: {cold:.2f} s")
        print(f"memory after opening: {memory_mb()}")
        for view in ("XY", "XZ", "YZ"):
            axis = {"XY": 2, "XZ": 1, "YZ": 0}[view]
            # Slices never shown, far from each other: read from disk.
            times = [
                timed(lambda v=view, i=index: window.set_slice(v, i), root)
                for index in np.linspace(5, args.shape[2 - axis] - 5, 6).astype(int)
            ]
            print(
                f"change {view} slice, not in the page cache: median {statistics.median(times):.3f} s, "
                f"max {max(times):.3f} s"
            )
        print(f"memory after changing slices: {memory_mb()}")
        root.destroy()
        del window
        root, window, warm = open_window(path, particles)
        print(f"first picture, file in the page cache: {warm:.2f} s")
        for view in ("XY", "XZ", "YZ"):
            axis = {"XY": 2, "XZ": 1, "YZ": 0}[view]
            times = []
            for step in range(1, 9):
                index = int(window.cursor[axis]) + 7 * step
                times.append(timed(lambda v=view, i=index: window.set_slice(v, i), root))
            print(f"change {view} slice: median {statistics.median(times):.3f} s, max {max(times):.3f} s")
        zooms = [timed(lambda f=f: window.zoom(f), root) for f in (1.25, 1.25, 1.25, 1 / 1.25, 1 / 1.25)]
        print(f"redraw after zoom: median {statistics.median(zooms):.3f} s, max {max(zooms):.3f} s")
        fit = timed(window.fit, root)
        print(f"fit (whole tomogram again): {fit:.3f} s")
        print(f"memory at the end: {memory_mb()}")
        root.destroy()
    finally:
        display.stop()
        if args.keep is None:
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
