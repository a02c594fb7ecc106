"""Label map -> particles: one position, class, size and score per particle.

The upstream method runs one scikit-learn mean-shift over the coordinates of
all labelled voxels of all classes. Most labelled blobs, however, are single,
isolated particles whose centre is simply their centroid. So here:

1. Connected components of the voxels of each class, so a rod touching a
   ribosome is two components, not one blob for mean-shift to cut. A smaller
   component of another class whose centre lies within the radius of a larger
   one (part of a particle labelled as the wrong class) is merged into it: a
   particle with mixed labels stays one particle, of its majority class.
2. A component no larger than ``split_factor`` particle volumes (a ball of the
   class radius) is one particle: centroid of its voxels.
3. A larger component (touching particles) is split by a flat-kernel mean-shift
   restricted to its own voxels, bandwidth tied to the class radius, seeded at
   local maxima of the distance to the component border (particle centres);
   each voxel goes to the nearest mode, the particle position is the mode.
4. Clusters smaller than the class's minimum size (default
   ``ClusterSettings.min_size_fraction`` of a ball of the class radius) are
   dropped: segmentation specks and fragments, not particles.

Everything but step 3 is vectorised over components; step 3 only runs on the
few components holding more than one particle. Classes absent from the label
map simply produce no particles.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from .errors import InputError
from .particles import ParticleTable
from .roi import positions_inside
from .settings import ClusterSettings

log = logging.getLogger(__name__)

MAX_MEAN_SHIFT_ITERATIONS = 50
# Particles fill a small share of a tomogram, even a crowded one; a label map labelled mostly as
# particles comes from an untrained model or from a tomogram at another voxel size than training's.
CROWDED_LABEL_FRACTION = 0.5
# (seed, point) pairs listed at once while shifting seeds, and (point, mode) distances computed at
# once to settle ties: bounds the memory on label maps where most voxels are labelled.
PAIRS_PER_CHUNK = 2_000_000


@dataclass
class Clusters:
    """Particles found in a label map and the voxel count of each.

    Attributes
    ----------
    particles : ParticleTable
        One row per particle: class, x, y, z (voxels of the label map, sub-voxel),
        score (mean score-map value of the particle's class over its voxels, or
        the voxel count when no score maps are given).
    sizes : (n,) int array
        Voxels in each particle's cluster, in table order.
    """

    particles: ParticleTable
    sizes: np.ndarray


def ball_volume(radius_voxels: float) -> float:
    """Voxels in a ball of ``radius_voxels``."""
    return 4.0 / 3.0 * np.pi * radius_voxels**3


def find_clusters(
    label_map: np.ndarray,
    radius_voxels: Mapping[int, float],
    min_cluster_size: Mapping[int, int] | None = None,
    score_maps: Mapping[int, np.ndarray] | None = None,
    tomo: str = "",
    bandwidth_voxels: Mapping[int, float] | None = None,
    settings: ClusterSettings | None = None,
    mask: np.ndarray | None = None,
) -> Clusters:
    """Find particles in a label map.

    Parameters
    ----------
    label_map : (z, y, x) int array
        0 = background, k >= 1 = class k.
    radius_voxels : {class: radius}
        Particle radius per class in voxels (> 0); every class present in the
        label map needs one.
    min_cluster_size : {class: voxels}, optional
        Clusters of a class with fewer voxels are dropped. Classes not given
        (all, by default) use ``settings.min_size_fraction`` of the ball volume
        of their radius; give 0 to keep every cluster.
    score_maps : {class: (z, y, x) array}, optional
        Per-class scores (e.g. from segmentation); a particle's score is the mean
        of its class's map over its voxels (NaN for a class without a map).
    tomo : str
        Tomogram identifier written in the table.
    bandwidth_voxels : {class: bandwidth}, optional
        Mean-shift bandwidth per class; default the class radius.
    settings : ClusterSettings, optional
        Default minimum size and when to split a cluster (see
        :class:`deepfinder.core.settings.ClusterSettings`); default ``ClusterSettings()``.
    mask : (z, y, x) bool array, optional
        Where to search, on the label map's grid (:func:`deepfinder.core.roi.fit_mask`):
        only particles whose centre lies in it are kept.

    Returns
    -------
    Clusters
        Particles sorted by class then z, y, x, with their sizes.
    """
    label_map = np.asarray(label_map)
    settings = settings or ClusterSettings()
    radius, bandwidth, min_size = _check_inputs(
        label_map, radius_voxels, min_cluster_size, score_maps, bandwidth_voxels, settings
    )
    if mask is not None and np.shape(mask) != label_map.shape:
        raise InputError(
            f"mask of shape {np.shape(mask)} is not on the grid of the label map {label_map.shape}"
        )
    components, n_components = _components_per_class(label_map)
    if n_components == 0:
        return Clusters(ParticleTable.empty(), np.empty(0, dtype=int))
    n_labels = int(label_map.max()) + 1
    foreground = np.flatnonzero(components.ravel())
    labelled = len(foreground) / label_map.size
    if labelled > CROWDED_LABEL_FRACTION:
        log.warning(
            "%.0f %% of the voxels of label map %s are labelled as particles: clustering will be slow "
            "and most picks false. Check that the model is trained (its learning curves) and that the "
            "tomogram has the voxel size of the training tomograms.",
            100 * labelled,
            tomo or "(no name)",
        )
    component = components.ravel()[foreground] - 1
    labels = label_map.ravel()[foreground].astype(np.int64)
    zyx = np.stack(np.unravel_index(foreground, label_map.shape), axis=1).astype(np.float64)
    votes = np.bincount(component * n_labels + labels, minlength=n_components * n_labels).reshape(
        n_components, n_labels
    )
    # Particles a component holds, judging by its voxels of each class and their ball volumes.
    expected = np.array([np.inf] + [ball_volume(radius.get(k, 1.0)) for k in range(1, n_labels)])
    to_split = np.flatnonzero((votes / expected).sum(axis=1) > settings.split_factor)

    # Cluster id of every labelled voxel: its component, unless the component is split.
    cluster = component.copy()
    modes = {}
    # Ids handed out; a split-off cluster may end up empty (no voxel nearest its mode, or merged
    # into a neighbour as a fragment), so the largest id in use can be lower.
    n_clusters = n_components
    if len(to_split):
        order = np.argsort(component, kind="stable")
        bounds = np.searchsorted(component[order], np.arange(n_components + 1))
        for c in to_split:
            members = order[bounds[c] : bounds[c + 1]]
            centres, assignment = _mean_shift(zyx[members], labels[members], bandwidth)
            cluster[members] = np.where(assignment == 0, c, n_clusters + assignment - 1)
            modes[c] = centres[0]
            for i, centre in enumerate(centres[1:]):
                modes[n_clusters + i] = centre
            n_clusters += len(centres) - 1
    cluster = _absorb_fragments(cluster, zyx, labels, radius, n_clusters)
    count = np.bincount(cluster, minlength=n_clusters)
    keep_cluster = count > 0
    centre = (
        np.stack(
            [np.bincount(cluster, weights=zyx[:, axis], minlength=n_clusters) for axis in range(3)], axis=1
        )
        / np.maximum(count, 1)[:, None]
    )
    for c, mode in modes.items():
        centre[c] = mode
    cluster_votes = np.bincount(cluster * n_labels + labels, minlength=n_clusters * n_labels).reshape(
        n_clusters, n_labels
    )
    class_id = cluster_votes.argmax(axis=1)
    threshold = np.array([min_size.get(k, 1) for k in range(n_labels)])
    keep_cluster &= count >= threshold[class_id]
    if mask is not None:
        keep_cluster &= positions_inside(mask, centre[:, ::-1])
    if score_maps:
        voxel_score = np.zeros(len(foreground))
        for k, score_map in score_maps.items():
            is_k = class_id[cluster] == k
            voxel_score[is_k] = np.asarray(score_map).ravel()[foreground[is_k]]
        score = np.bincount(cluster, weights=voxel_score, minlength=n_clusters) / np.maximum(count, 1)
        score[~np.isin(class_id, list(score_maps))] = np.nan
    else:
        score = count.astype(float)
    kept = np.flatnonzero(keep_cluster)
    kept = kept[np.lexsort((centre[kept, 2], centre[kept, 1], centre[kept, 0], class_id[kept]))]
    table = ParticleTable(tomo=tomo, class_id=class_id[kept], xyz=centre[kept, ::-1], score=score[kept])
    return Clusters(table, count[kept])


def cluster_labels(
    label_map: np.ndarray,
    radius_voxels: Mapping[int, float],
    min_cluster_size: Mapping[int, int] | None = None,
    score_maps: Mapping[int, np.ndarray] | None = None,
    tomo: str = "",
    bandwidth_voxels: Mapping[int, float] | None = None,
) -> ParticleTable:
    """Particles of a label map as a table; see :func:`find_clusters` for the method.

    The score column holds the mean class score when ``score_maps`` are given,
    else the cluster size in voxels (use :func:`find_clusters` for both).
    """
    return find_clusters(
        label_map, radius_voxels, min_cluster_size, score_maps, tomo, bandwidth_voxels
    ).particles


def _mean_shift(
    points: np.ndarray, point_labels: np.ndarray, bandwidth: Mapping[int, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Flat-kernel mean-shift of one component's voxel coordinates (n, 3).

    Seeds sit at local maxima of the distance to the component border (the
    centres of touching balls); each seed moves with the bandwidth of the class
    labelled at its start, so a small particle next to a big one keeps its own
    mode. A mode closer to a stronger kept mode than the larger of their
    bandwidths is dropped. Returns the modes (m, 3), strongest first, and for
    every point the mode nearest in units of the mode's bandwidth (the lowest
    mode index on exact ties).
    """
    seeds, seed_bandwidth = _seeds(points, point_labels, bandwidth)
    tree = cKDTree(points)
    seeds = _shift_seeds(tree, points, seeds, seed_bandwidth)
    # Seeds that met are one candidate: the same strength, and a copy of a kept mode is dropped.
    first = _first_of_each_row(np.column_stack([seeds, seed_bandwidth]))
    seeds, seed_bandwidth = seeds[first], seed_bandwidth[first]
    # Strength: share of the kernel ball filled, so small and large particles compare fairly.
    strength = tree.query_ball_point(seeds, seed_bandwidth, return_length=True) / ball_volume(seed_bandwidth)
    kept = _separated_modes(seeds, seed_bandwidth, strength)
    modes, widths = seeds[kept], seed_bandwidth[kept]
    return modes, _nearest_mode(points, modes, widths)


def _seeds(
    points: np.ndarray, point_labels: np.ndarray, bandwidth: Mapping[int, float]
) -> tuple[np.ndarray, np.ndarray]:
    """Mean-shift seeds (s, 3) at the local maxima of the distance to the border of the points,
    and the bandwidth (s,) of the class labelled at each."""
    lower = points.min(axis=0).astype(int)
    label_box = np.zeros(tuple(points.max(axis=0).astype(int) - lower + 3), dtype=np.int64)
    label_box[tuple((points.astype(int) - lower + 1).T)] = point_labels
    box = label_box > 0
    distance = ndimage.distance_transform_edt(box)
    seeds = np.argwhere((distance == ndimage.maximum_filter(distance, size=3)) & box)
    seed_bandwidth = np.array([bandwidth[int(k)] for k in label_box[tuple(seeds.T)]])
    seeds = seeds.astype(np.float64) + lower - 1
    # Plateau ridges give many equivalent peaks; one seed per half-bandwidth cell suffices.
    cell = max(min(bandwidth.values()) / 2, 1.0)
    first = _first_of_each_row(np.floor(seeds / cell).astype(np.int64))
    return seeds[first], seed_bandwidth[first]


def _first_of_each_row(rows: np.ndarray) -> np.ndarray:
    """Indices of the first occurrence of each distinct row of ``rows``, in their original order."""
    _, first = np.unique(rows, axis=0, return_index=True)
    return np.sort(first)


def _shift_seeds(tree: cKDTree, points: np.ndarray, seeds: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Seeds moved to the mean of the points within their radius until no seed moves by
    1e-3 of the smallest radius (at most ``MAX_MEAN_SHIFT_ITERATIONS`` steps)."""
    seeds = seeds.copy()
    moving = np.ones(len(seeds), dtype=bool)
    for _ in range(MAX_MEAN_SHIFT_ITERATIONS):
        step = np.zeros(len(seeds))
        for radius in np.unique(radii[moving]):
            group = np.flatnonzero(moving & (radii == radius))
            # Seeds that met move together from then on: shift each position once.
            at, which = np.unique(seeds[group], axis=0, return_inverse=True)
            shifted = _neighbour_means(tree, points, at, radius)[which]
            step[group] = np.abs(shifted - seeds[group]).max(axis=1)
            seeds[group] = shifted
        if step.max() < 1e-3 * radii.min():
            break
        # A seed that did not move has the same neighbours next time: it stays there for good.
        moving &= step > 0
    return seeds


def _neighbour_means(tree: cKDTree, points: np.ndarray, seeds: np.ndarray, radius: float) -> np.ndarray:
    """Mean of the points (indexed by ``tree``) within ``radius`` of each seed, or the seed itself
    where there are none."""
    means = seeds.copy()
    per_chunk = max(1, int(PAIRS_PER_CHUNK / ball_volume(radius)))
    for start in range(0, len(seeds), per_chunk):
        chunk = seeds[start : start + per_chunk]
        pairs = cKDTree(chunk).sparse_distance_matrix(tree, radius, output_type="ndarray")
        seed, point = pairs["i"], pairs["j"]
        count = np.bincount(seed, minlength=len(chunk))
        total = np.stack([np.bincount(seed, weights=x[point], minlength=len(chunk)) for x in points.T], 1)
        found = count > 0
        means[start : start + per_chunk][found] = total[found] / count[found, None]
    return means


def _separated_modes(modes: np.ndarray, widths: np.ndarray, strength: np.ndarray) -> np.ndarray:
    """Indices of the modes kept, strongest first (stable order): a mode closer to a stronger
    kept mode than the larger of their two widths is dropped."""
    order = np.argsort(-strength, kind="stable")
    # A hair wider than the largest width, so rounding cannot hide a mode that drops another.
    near = cKDTree(modes).query_ball_point(modes, widths.max() * (1 + 1e-9))
    kept = np.zeros(len(modes), dtype=bool)
    for i in order:
        kept[i] = all(
            np.linalg.norm(modes[i] - modes[j]) >= max(widths[j], widths[i]) for j in near[i] if kept[j]
        )
    return order[kept[order]]


def _nearest_mode(points: np.ndarray, modes: np.ndarray, widths: np.ndarray) -> np.ndarray:
    """Index of the mode nearest to each point in units of the mode's width, the lowest index on
    exact ties (as an argmin over all modes)."""
    scaled, index = [], []
    for width in np.unique(widths):
        of_width = np.flatnonzero(widths == width)
        # The two nearest, to spot ties; with a single mode of this width the second is at
        # infinity, with index len(of_width).
        distance, nearest = cKDTree(modes[of_width]).query(points, k=2)
        scaled.append(distance / width)
        index.append(np.append(of_width, -1)[nearest])
    scaled, index = np.concatenate(scaled, axis=1), np.concatenate(index, axis=1)
    nearest = index[np.arange(len(points)), scaled.argmin(axis=1)]
    first, second = np.partition(scaled, 1, axis=1)[:, :2].T
    # Near-ties (the tree may round a distance differently) go to the argmin over all modes.
    tied = np.flatnonzero(second <= first * (1 + 1e-9))
    per_chunk = max(1, PAIRS_PER_CHUNK // len(modes))
    for start in range(0, len(tied), per_chunk):
        chunk = tied[start : start + per_chunk]
        nearest[chunk] = (np.linalg.norm(points[chunk, None] - modes[None], axis=2) / widths).argmin(axis=1)
    return nearest


def _absorb_fragments(
    cluster: np.ndarray, zyx: np.ndarray, labels: np.ndarray, radius: Mapping[int, float], n_clusters: int
) -> np.ndarray:
    """Cluster ids (``0..n_clusters-1``) after merging wrong-class fragments into the particle
    they lie in."""
    count = np.bincount(cluster, minlength=n_clusters)
    centre = (
        np.stack(
            [np.bincount(cluster, weights=zyx[:, axis], minlength=n_clusters) for axis in range(3)], axis=1
        )
        / np.maximum(count, 1)[:, None]
    )
    n_labels = int(labels.max()) + 1
    class_id = (
        np.bincount(cluster * n_labels + labels, minlength=n_clusters * n_labels)
        .reshape(n_clusters, n_labels)
        .argmax(axis=1)
    )
    target = np.arange(n_clusters)
    tree = cKDTree(centre)
    for c in np.argsort(-count, kind="stable"):
        if count[c] == 0 or target[c] != c:
            continue
        for d in tree.query_ball_point(centre[c], radius[class_id[c]]):
            if count[d] < count[c] and class_id[d] != class_id[c] and target[d] == d:
                target[d] = c
    return target[cluster]


def _components_per_class(label_map: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components of each class's voxels, numbered 1..n across classes."""
    components = np.zeros(label_map.shape, dtype=np.int32)
    n_components = 0
    for k in np.unique(label_map):
        if k == 0:
            continue
        of_class, n = ndimage.label(label_map == k)
        inside = of_class > 0
        components[inside] = of_class[inside] + n_components
        n_components += n
    return components, n_components


def check_label_map(label_map: np.ndarray) -> None:
    """Raise :class:`InputError` unless ``label_map`` is a 3D map of class labels 0, 1, 2, ..."""
    if label_map.ndim != 3:
        raise InputError(f"the label map must be a 3D (z, y, x) array, got shape {label_map.shape}")
    if not np.issubdtype(label_map.dtype, np.integer):
        raise InputError(
            f"the label map must hold integer class labels, got {label_map.dtype}: "
            "give a label map (from segment or targets), not a tomogram or a score map"
        )
    if label_map.size and label_map.min() < 0:
        raise InputError("the label map holds negative labels; classes are 0 (background), 1, 2, ...")


def _check_inputs(label_map, radius_voxels, min_cluster_size, score_maps, bandwidth_voxels, settings):
    settings.check()
    check_label_map(label_map)
    radius = {int(k): float(v) for k, v in dict(radius_voxels).items()}
    bandwidth = {int(k): float(v) for k, v in dict(bandwidth_voxels or radius).items()}
    for name, values in (("radius_voxels", radius), ("bandwidth_voxels", bandwidth)):
        bad = {k: v for k, v in values.items() if not v > 0}
        if bad:
            raise InputError(f"{name} must be > 0 voxels for every class, got {bad}")
    present = {int(k) for k in np.unique(label_map)} - {0}
    missing = sorted(present - set(radius))
    if missing:
        raise InputError(
            f"label_map has class(es) {missing} with no radius in radius_voxels: give a radius for each class"
        )
    missing = sorted(present - set(bandwidth))
    if missing:
        raise InputError(f"bandwidth_voxels lacks class(es) {missing} present in label_map")
    given = {int(k): int(v) for k, v in dict(min_cluster_size or {}).items()}
    min_size = {k: int(settings.min_size_fraction * ball_volume(r)) for k, r in radius.items()}
    min_size.update(given)
    bad = {k: v for k, v in given.items() if v < 0}
    if bad:
        raise InputError(f"min_cluster_size must be >= 0 voxels, got {bad}")
    for k, score_map in dict(score_maps or {}).items():
        if np.shape(score_map) != label_map.shape:
            raise InputError(
                f"Score map of class {k} has shape {np.shape(score_map)}, the "
                f"label map {label_map.shape}: both must come from one segmentation"
            )
    return radius, bandwidth, min_size
