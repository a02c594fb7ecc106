"""Orthoslice pictures of simulated tomograms, to check them by eye.

Usage: python benchmarks/plot_simulation.py OUT_DIR [--preset demo] [--snr 0.5 0.1]
Writes, per SNR, a figure with XY and XZ central slices of the tomogram, the
clean density and the label map, plus the XZ power spectrum (missing wedge)
and the power spectrum of one projection (CTF Thon rings).
"""

import argparse
from dataclasses import replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from deepfinder.core.shapes import procedural_shape
from deepfinder.core.simulate import PRESETS, ctf, project, projection_operators, simulate_tomogram


def thon_rings(density, voxel_size, tilt_series):
    """Log power spectrum of the untilted noise-free micrograph (CTF fringes)."""
    projector, _ = projection_operators(density.shape[0], density.shape[2], np.zeros(1))
    image = project(density, projector)[0]
    spectrum = np.fft.rfft2(image) * ctf(image.shape, voxel_size, tilt_series)
    return np.fft.fftshift(np.log(np.abs(spectrum) ** 2 + 1e-3), axes=0)


def orthoslice_figure(result, title, path, rings, dpi=70):
    tomogram, density, labels = result.tomogram, result.density, result.labels
    z, y = tomogram.shape[0] // 2, tomogram.shape[1] // 2
    spectrum = np.log(np.abs(np.fft.fftshift(np.fft.fftn(tomogram)))[:, tomogram.shape[1] // 2] ** 2 + 1e-6)
    figure, axes = plt.subplots(2, 4, figsize=(16, 6.5), gridspec_kw={"height_ratios": [2, 1]})
    for column, (volume, name, cmap) in enumerate(
        [
            (tomogram, "tomogram", "gray"),
            (-density, "clean density (inverted)", "gray"),
            (labels, "labels", "tab10"),
        ]
    ):
        limits = np.percentile(volume, [1, 99]) if cmap == "gray" else (0, 9)
        axes[0, column].imshow(volume[z], cmap=cmap, vmin=limits[0], vmax=limits[1])
        axes[0, column].set_title(f"{name}: XY slice z={z}")
        axes[1, column].imshow(volume[:, y], cmap=cmap, vmin=limits[0], vmax=limits[1])
        axes[1, column].set_title(f"XZ slice y={y}")
    axes[0, 3].imshow(spectrum, cmap="gray", aspect="auto")
    axes[0, 3].set_title("|FFT|^2 of tomogram, kx-kz plane")
    axes[1, 3].imshow(rings.T, cmap="gray", aspect="auto")
    axes[1, 3].set_title("0-degree micrograph spectrum (CTF)")
    for axis in axes.ravel():
        axis.set_xticks([])
        axis.set_yticks([])
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--preset", default="demo", choices=["tiny", "demo"])
    parser.add_argument("--snr", type=float, nargs="+", default=[2.0, 0.5, 0.1])
    parser.add_argument("--dpi", type=int, default=70)
    args = parser.parse_args()
    args.out_dir.mkdir(parents=True, exist_ok=True)
    recipe = PRESETS[args.preset]
    shapes = [procedural_shape(name, recipe.specimen.voxel_size) for name in recipe.shape_names]
    for snr in args.snr:
        tilt_series = replace(recipe.tilt_series, snr=snr)
        result = simulate_tomogram(shapes, recipe.specimen, tilt_series, seed=0)
        path = args.out_dir / f"{args.preset}_snr{snr:g}.png"
        rings = thon_rings(result.density, recipe.specimen.voxel_size, tilt_series)
        orthoslice_figure(result, f"{args.preset} preset, SNR {snr:g} (projections)", path, rings, args.dpi)
        print(path)


if __name__ == "__main__":
    main()
