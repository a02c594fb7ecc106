"""Clustering speed and F1: deepfinder.core.cluster versus the upstream pooled mean-shift.

A synthetic label map (default 512 x 512 x 200 voxels, ~2,500 balls of three
classes and radii at random non-overlapping positions, a share of them touching
a neighbour) is clustered by

- ``cluster_labels`` (connected components, mean-shift only where particles touch);
- the upstream method: one scikit-learn ``MeanShift(bandwidth, bin_seeding=True)``
  over the coordinates of all labelled voxels of all classes, class of each
  cluster by majority vote, cluster size as score.

Both are scored against the known positions (distance rule, tolerance = class radius).

``--dense`` clusters instead a label map as an untrained or poorly trained network gives
(default 64 x 128 x 128): smooth random regions of three classes covering ~75 % of the volume,
so nearly every component is split by mean-shift; it prints the time and the peak memory.
Usage: python benchmarks/bench_cluster.py [--shape Z Y X] [--particles N] [--skip-upstream] [--dense]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from scipy import ndimage

from deepfinder.core.cluster import cluster_labels
from deepfinder.core.evaluate import format_table, match_by_distance, precision_recall_f1
from deepfinder.core.particles import ParticleTable
from deepfinder.core.targets import sphere_targets

RADII = {1: 4.0, 2: 6.0, 3: 8.0}


def synthetic_label_map(shape, n_particles, touching_share=0.2, seed=0):
    """Balls of RADII at random positions, never overlapping, some touching; (labels, truth)."""
    rng = np.random.default_rng(seed)
    classes = rng.choice(list(RADII), size=n_particles)
    centres, radii, kept_classes = [], [], []
    attempts = 0
    while len(centres) < n_particles and attempts < 50 * n_particles:
        attempts += 1
        k = classes[len(centres)]
        r = RADII[k]
        if centres and rng.random() < touching_share:
            # Touch a random earlier particle: surfaces 0.5 voxel apart, voxels adjacent.
            j = rng.integers(len(centres))
            direction = rng.normal(size=3)
            centre = centres[j] + direction / np.linalg.norm(direction) * (radii[j] + r + 0.5)
        else:
            centre = rng.uniform(r, np.array(shape) - r - 1)
        if np.any(centre < r) or np.any(centre > np.array(shape) - r - 1):
            continue
        if centres:
            d = np.linalg.norm(np.array(centres) - centre, axis=1)
            if np.any(d < np.array(radii) + r + 0.5):
                continue
        centres.append(centre)
        radii.append(r)
        kept_classes.append(k)
    zyx = np.array(centres)
    truth = ParticleTable(tomo="synthetic", class_id=kept_classes, xyz=zyx[:, ::-1])
    labels = sphere_targets(shape, truth, RADII)
    return labels, truth


def dense_label_map(shape, seed=0):
    """Label map of an untrained network: smooth random regions of each class, touching everywhere.

    One smoothed Gaussian noise field per label (background included); each voxel takes the label
    of the largest field.
    """
    rng = np.random.default_rng(seed)
    fields = [ndimage.gaussian_filter(rng.normal(size=shape), sigma=2.0) for _ in range(len(RADII) + 1)]
    return np.argmax(fields, axis=0).astype(np.uint8)


def peak_memory_gb():
    """Peak resident memory of this process so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def bench_dense(shape):
    """Time and peak memory of ``cluster_labels`` on a dense label map."""
    labels = dense_label_map(shape)
    print(
        f"dense label map {labels.shape} (z, y, x): {int((labels > 0).sum())} labelled voxels "
        f"({(labels > 0).mean():.0%}), peak memory before clustering {peak_memory_gb():.2f} GB"
    )
    started = time.perf_counter()
    found = cluster_labels(labels, RADII, tomo="dense")
    print(
        f"cluster_labels: {time.perf_counter() - started:.1f} s, {len(found)} particles, "
        f"peak memory {peak_memory_gb():.2f} GB"
    )


def upstream_mean_shift(labels, bandwidth):
    """The upstream method: one sklearn MeanShift over all labelled voxels, majority-vote class."""
    from sklearn.cluster import MeanShift

    zyx = np.argwhere(labels > 0)
    clustering = MeanShift(bandwidth=bandwidth, bin_seeding=True).fit(zyx)
    voxel_class = labels[tuple(zyx.T)]
    n = clustering.cluster_centers_.shape[0]
    votes = np.zeros((n, int(labels.max()) + 1), dtype=int)
    np.add.at(votes, (clustering.labels_, voxel_class), 1)
    return ParticleTable(
        tomo="synthetic",
        class_id=votes.argmax(axis=1),
        xyz=clustering.cluster_centers_[:, ::-1],
        score=votes.sum(axis=1),
    )


def report(truth, found):
    """P/R/F1 table and mean distance of matched detections to the true centres."""
    result = match_by_distance(found, truth, tolerance_voxels=max(RADII.values()))
    rows = precision_recall_f1(result, {k: f"r={r:g}" for k, r in RADII.items()})
    hit = result.detected_match >= 0
    error = np.linalg.norm(found.xyz[hit] - truth.xyz[result.detected_match[hit]], axis=1)
    return format_table(rows) + f"\nmean position error of matches: {error.mean():.3f} voxels"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, help="default 200 512 512, with --dense 64 128 128")
    parser.add_argument("--particles", type=int, default=2500)
    parser.add_argument("--skip-upstream", action="store_true")
    parser.add_argument("--dense", action="store_true", help="an untrained network's label map instead")
    args = parser.parse_args(argv)
    if args.dense:
        bench_dense(tuple(args.shape or (64, 128, 128)))
        return

    labels, truth = synthetic_label_map(tuple(args.shape or (200, 512, 512)), args.particles)
    n_blobs = ndimage.label(labels > 0)[1]
    print(
        f"label map {labels.shape} (z, y, x): {len(truth)} particles in {n_blobs} connected "
        f"blobs (the rest touch), {int((labels > 0).sum())} labelled voxels"
    )

    started = time.perf_counter()
    found = cluster_labels(labels, RADII, tomo="synthetic")
    ours = time.perf_counter() - started
    print(f"\ncluster_labels: {ours:.2f} s, {len(found)} particles, peak memory {peak_memory_gb():.2f} GB")
    print(report(truth, found))
    if args.skip_upstream:
        return
    bandwidth = float(np.mean(list(RADII.values())))
    started = time.perf_counter()
    upstream = upstream_mean_shift(labels, bandwidth)
    theirs = time.perf_counter() - started
    print(
        f"\nupstream sklearn MeanShift(bandwidth={bandwidth:g}, bin_seeding=True): "
        f"{theirs:.1f} s, {len(upstream)} particles"
    )
    print(report(truth, upstream))
    print(f"\nspeed-up: {theirs / ours:.0f}x")


if __name__ == "__main__":
    main()
