"""What running each protocol step as its own ``deepfinder`` process costs, and how to share a CPU.

Protocols run every heavy step (train, segment one tomogram, cluster one
tomogram) as a separate engine process, so that each step can get its own GPU or
queue job. This prints, on this machine, untrained weights (speed does not
depend on them):

- the start-up of an engine process: ``import tensorflow`` alone, and the wall
  time of ``deepfinder segment`` on a tiny tomogram minus the segmentation time
  it reports (process start, imports, model build and load, file writes);
- that overhead's share of one ``--large`` segmentation (default 200 x 512 x 512);
- four ``--small`` tomograms segmented one at a time with every core (one step
  at a time, 2 threads) against two at a time with one thread each (two parallel
  steps of 1 thread), and two at a time with every core each (oversubscribed).

Usage:
    python benchmarks/bench_processes.py [--large Z Y X] [--small Z Y X] [--cores N]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

N_CLASSES = 4


def deepfinder(*arguments) -> tuple[float, str]:
    """Run ``deepfinder <arguments>``; its wall time in seconds and its output."""
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "deepfinder.core.cli", *map(str, arguments)],
        capture_output=True,
        text=True,
        check=True,
    )
    return time.perf_counter() - started, result.stdout


def segment(tomogram: Path, weights: Path, *options) -> tuple[float, float]:
    """Wall time of a ``deepfinder segment`` process and the segmentation time it reports."""
    labels = tomogram.with_suffix(".labels.mrc")
    wall, out = deepfinder(
        "segment", "--tomogram", tomogram, "--model", weights, "--labels", labels, *options
    )
    return wall, float(re.search(r" in ([\d.]+) s \(", out).group(1))


def import_seconds() -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", "import tensorflow"],
        check=True,
        stderr=subprocess.DEVNULL,  # TensorFlow's start-up lines
    )
    return time.perf_counter() - started


def batch(tomograms: list[Path], weights: Path, parallel: int, threads: int | None) -> float:
    """Seconds to segment ``tomograms`` with ``parallel`` processes at a time of ``threads`` each."""
    options = ("--threads", threads) if threads else ()
    started = time.perf_counter()
    with ThreadPoolExecutor(parallel) as pool:
        list(pool.map(lambda tomogram: segment(tomogram, weights, *options), tomograms))
    return time.perf_counter() - started


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--large", type=int, nargs=3, default=(200, 512, 512), metavar=("Z", "Y", "X"))
    parser.add_argument("--small", type=int, nargs=3, default=(96, 192, 192), metavar=("Z", "Y", "X"))
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    args = parser.parse_args(argv)

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_segment import noise_tomogram

    from deepfinder.core.model import build_unet, save_model

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at start")
    with tempfile.TemporaryDirectory(prefix="bench_processes_") as folder:
        folder = Path(folder)
        weights = save_model(build_unet(N_CLASSES), folder / "unet.weights.h5", {})
        tiny = noise_tomogram(folder / "tiny.mrc", (32, 64, 64))
        imports = min(import_seconds() for _ in range(3))
        runs = [segment(tiny, weights) for _ in range(3)]
        overhead = min(wall - seconds for wall, seconds in runs)
        print(f"import tensorflow in a fresh process: {imports:.1f} s (best of 3)")
        print(
            f"deepfinder segment, 32 x 64 x 64: {min(w for w, _ in runs):.1f} s wall, of which "
            f"{overhead:.1f} s are not segmentation (process, imports, model, writes; best of 3)"
        )

        large = noise_tomogram(folder / "large.mrc", tuple(args.large))
        wall, seconds = segment(large, weights)
        print(
            f"deepfinder segment, {' x '.join(map(str, args.large))}: {wall:.0f} s wall, "
            f"segmentation {seconds:.0f} s; the process overhead is {overhead / wall:.1%} of it"
        )

        small = [noise_tomogram(folder / f"small{i}.mrc", tuple(args.small), seed=i) for i in range(4)]
        shape = " x ".join(map(str, args.small))
        sequential = batch(small, weights, parallel=1, threads=args.cores)
        print(f"4 tomograms {shape}, 1 step at a time x {args.cores} threads: {sequential:.0f} s")
        halves = batch(small, weights, parallel=2, threads=max(1, args.cores // 2))
        print(
            f"4 tomograms {shape}, 2 parallel steps x {max(1, args.cores // 2)} thread(s): {halves:.0f} s "
            f"({sequential / halves:.2f}x)"
        )
        oversubscribed = batch(small, weights, parallel=2, threads=None)
        print(
            f"4 tomograms {shape}, 2 parallel steps x every core each: {oversubscribed:.0f} s "
            f"({sequential / oversubscribed:.2f}x)"
        )
    print(f"load average {os.getloadavg()[0]:.1f} at end")


if __name__ == "__main__":
    main()
