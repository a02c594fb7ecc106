"""Tiled segmentation: a tomogram in, per-voxel class scores and a label map out.

The tomogram is cut into overlapping tiles (edges multiples of 4, aligned on a
4-voxel grid so max-pooling sees the same grid as a whole-volume pass). Each
tile is predicted whole, only its centre (``crop_voxels`` trimmed from every
side that faces another tile) is kept, and where kept centres overlap the
scores are averaged. Tiles touching the tomogram border keep their outer edge:
there the network's own zero padding applies, exactly as in a whole-volume
pass. With ``crop_voxels`` at least the network's receptive-field radius the
result equals a whole-volume prediction (see the tests); smaller crops trade a
little accuracy near tile seams for far less recomputation.

Scores of one row of tiles (a slab of the full y-x extent, one tile deep) are
accumulated, and written to disk in thin z-slabs as soon as they are final. So
memory holds the network's activations for one batch of tiles, that slab
(float16 in :func:`segment_tomogram`: tile depth x y x x x classes x 2 bytes)
and the pages of the memory-mapped input, never whole score volumes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from .errors import InputError
from .io import atomic_output, create_volume, read_volume, read_voxel_size, refuse_overwriting_inputs
from .model import load_model, metadata_path, output_classes
from .normalize import normalize, tomogram_stats
from .settings import AUTOMATIC_TILE_SIZE, POOLING_FACTOR, SegmentationSettings

log = logging.getLogger(__name__)

# Seconds between progress lines: often enough to watch, rare enough for large tomograms.
PROGRESS_SECONDS = 5
# z-slices per yielded slab: small, so the copies made on the way to disk stay small.
SLAB_DEPTH = 8
# The 180-degree rotations about z, y and x, as the (z, y, x) axes each one reverses. They keep the
# missing wedge (tilt axis y) where it was and the particles' hand, so a network trained on
# tomograms sees each rotated tile as another tomogram of the same kind.
WEDGE_PRESERVING_ROTATIONS = ((1, 2), (0, 2), (0, 1))
# Label maps hold one signed byte per voxel.
MAX_LABEL_CLASSES = 128


@dataclass(frozen=True)
class AxisTiles:
    """Tiling of one axis: tile starts, common tile length, kept range of each tile."""

    starts: tuple[int, ...]
    length: int
    keep: tuple[tuple[int, int], ...]

    def coverage(self, size: int) -> np.ndarray:
        """Number of kept tile centres covering each of ``size`` voxels (for averaging)."""
        counts = np.zeros(size, dtype=np.int32)
        for begin, end in self.keep:
            counts[begin : min(end, size)] += 1
        return counts


def plan_axis(size: int, patch_size: int, crop_voxels: int) -> AxisTiles:
    """Fewest equal tiles (edge <= ``patch_size``, multiple of 4) covering ``size`` voxels.

    Tile starts are multiples of 4; every voxel of ``[0, size)`` lies in the kept
    centre of at least one tile; the kept centre of a tile excludes
    ``crop_voxels`` on each side that is not the volume border.
    """
    padded = _ceil_to(size, POOLING_FACTOR)
    if padded <= patch_size:
        return AxisTiles(starts=(0,), length=padded, keep=((0, padded),))
    length, starts = patch_size, _tile_starts(padded, patch_size, crop_voxels)
    # Fewer, shorter tiles waste less than full-size tiles with large overlaps.
    for n_tiles in range(2, len(starts) + 1):
        shorter = _ceil_to(math.ceil((padded + 2 * crop_voxels * (n_tiles - 1)) / n_tiles), POOLING_FACTOR)
        if shorter <= patch_size and shorter - 2 * crop_voxels >= POOLING_FACTOR:
            candidate = _tile_starts(padded, shorter, crop_voxels)
            if len(candidate) <= n_tiles:
                length, starts = shorter, candidate
                break
    keep = tuple(
        (start + crop_voxels if i else 0, start + length - crop_voxels if i < len(starts) - 1 else padded)
        for i, start in enumerate(starts)
    )
    return AxisTiles(starts=tuple(starts), length=length, keep=keep)


def default_patch_size(shape: tuple[int, int, int]) -> int:
    """:data:`~deepfinder.core.settings.AUTOMATIC_TILE_SIZE`, or less for a tomogram whose
    largest edge is smaller."""
    return min(AUTOMATIC_TILE_SIZE, _ceil_to(max(shape), POOLING_FACTOR))


def tiling_for(shape: tuple[int, int, int], settings: SegmentationSettings) -> SegmentationSettings:
    """``settings`` with the tile size chosen for a volume of ``shape`` (when it is 0, automatic),
    checked: raise ``ValueError`` for tile geometries that cannot segment such a volume."""
    if not settings.patch_size:
        settings = dataclasses.replace(settings, patch_size=default_patch_size(shape))
    settings.check()
    patch_size = settings.patch_size
    if len(shape) != 3:
        raise InputError(f"Expected a 3D tomogram, got an array of shape {tuple(shape)}")
    if min(shape) < POOLING_FACTOR:
        raise InputError(
            f"Tomogram of shape {tuple(shape)} is too thin: every edge must be >= {POOLING_FACTOR} voxels"
        )
    # Thin axes just get shorter tiles; a patch exceeding every edge is a mistake.
    largest = _ceil_to(max(shape), POOLING_FACTOR)
    if patch_size > largest:
        raise InputError(
            f"patch_size {patch_size} is larger than the tomogram (shape "
            f"{tuple(shape)}): use patch_size <= {largest}"
        )
    return settings


def iter_score_slabs(
    volume: np.ndarray,
    model,
    settings: SegmentationSettings,
    *,
    slab_alignment: int = 1,
    stats: tuple[float, float] | None = None,
    window_dtype=np.float32,
    mask: np.ndarray | None = None,
) -> Iterator[tuple[int, np.ndarray]]:
    """Predict class scores tile by tile and yield them as finished z-slabs.

    Logs the tiles done at INFO level (``deepfinder.core.segment`` logger) at the end
    of each row of tiles and every :data:`PROGRESS_SECONDS` within a row.

    Parameters
    ----------
    volume : (z, y, x) array
        The tomogram (may be memory-mapped; tiles are read on demand).
    model : keras.Model
        A fully convolutional U-net (``build_unet(n_classes)``).
    settings : SegmentationSettings
        Tile size (``patch_size``, 0: :func:`default_patch_size`), ``crop_voxels``
        dropped from each inner side of a tile, tiles per forward pass
        (``batch_size``), and ``average_rotations``: also predict each tile
        rotated by 180 degrees about z, y and x (:data:`WEDGE_PRESERVING_ROTATIONS`)
        and average the four scores. ``bin_scores`` and ``precision`` are not
        used here (the caller bins; the model has its precision).
    slab_alignment : int
        Slab boundaries (except the last) are multiples of this (2 for binning).
    stats : (mean, std), optional
        Normalisation statistics; default :func:`tomogram_stats` of ``volume``.
    window_dtype : numpy dtype
        Storage of the scores of one row of tiles (a full-width slab as deep as a
        tile): float32 keeps tiling exact, float16 halves the largest buffer.
    mask : (z, y, x) bool array, optional
        Where to search (:func:`deepfinder.core.roi.fit_mask`): tiles whose kept
        centre holds no mask voxel are not predicted, and every voxel outside the
        mask scores 1 for the background and 0 for the particle classes.

    Yields
    ------
    (z_start, scores)
        ``scores`` is a float32 (dz, y, x, n_classes) slab starting at z-index ``z_start``,
        dz <= ``SLAB_DEPTH * slab_alignment``; slabs are consecutive and cover the volume.
    """
    shape = tuple(volume.shape)
    settings = tiling_for(shape, settings)
    patch_size, crop_voxels, batch_size = settings.patch_size, settings.crop_voxels, settings.batch_size
    mean, std = stats if stats is not None else tomogram_stats(volume)
    plans = [plan_axis(size, patch_size, crop_voxels) for size in shape]
    tile_shape = tuple(plan.length for plan in plans)
    coverage_yx = (plans[1].coverage(shape[1])[:, None] * plans[2].coverage(shape[2])[None, :]).astype(
        np.float32
    )
    coverage_z = plans[0].coverage(shape[0]).astype(np.float32)
    n_classes = output_classes(model)
    window_depth = max(min(end, shape[0]) - begin for begin, end in plans[0].keep)
    window_depth += slab_alignment
    window = np.zeros((window_depth, shape[1], shape[2], n_classes), dtype=window_dtype)
    origin = 0

    def flush(until: int):
        """Yield the finished slices [origin, until) in small slabs, then slide the window."""
        nonlocal origin
        if until <= origin:
            return
        step = SLAB_DEPTH * slab_alignment
        for begin in range(origin, until, step):
            end = min(begin + step, until)
            slab = window[begin - origin : end - origin].astype(np.float32)
            slab /= coverage_z[begin:end, None, None, None]
            slab /= coverage_yx[None, :, :, None]
            if mask is not None:
                _background_outside(slab, mask[begin:end])
            yield begin, slab
        shift = until - origin
        for i in range(window_depth - shift):  # slice by slice: no temporary window copy
            window[i] = window[i + shift]
        window[window_depth - shift :] = 0
        origin = until

    rows, row_tiles = _tiles_by_row(plans, shape, mask)
    n_rows, n_tiles, done = len(rows), sum(len(tiles) for tiles in row_tiles), 0
    if mask is not None:
        n_all = n_rows * len(plans[1].starts) * len(plans[2].starts)
        log.info("segment: %d of %d tiles hold voxels of the mask, the others are skipped", n_tiles, n_all)
    started = last_report = time.perf_counter()
    for row, ((z_start, z_keep0, z_keep1), tiles) in enumerate(zip(rows, row_tiles)):
        yield from flush(z_keep0 // slab_alignment * slab_alignment)
        for first in range(0, len(tiles), batch_size):
            group = tiles[first : first + batch_size]
            batch = np.stack(
                [_read_tile(volume, (z_start, ys, xs), tile_shape, mean, std) for ys, _, xs, _ in group]
            )
            scores = _predict(model, batch, settings.average_rotations)
            for tile_scores, (ys, (y0, y1), xs, (x0, x1)) in zip(scores, group):
                y1, x1 = min(y1, shape[1]), min(x1, shape[2])
                window[z_keep0 - origin : z_keep1 - origin, y0:y1, x0:x1] += tile_scores[
                    z_keep0 - z_start : z_keep1 - z_start, y0 - ys : y1 - ys, x0 - xs : x1 - xs
                ]
            done += len(group)
            now = time.perf_counter()
            row_done = first + batch_size >= len(tiles)
            if row_done or now - last_report >= PROGRESS_SECONDS:
                rows_done = row + 1 if row_done else row
                log.info(
                    "segment: %d/%d tiles of %s (%d/%d rows) done (%.0f s)",
                    *(done, n_tiles, tile_shape, rows_done, n_rows, now - started),
                )
                last_report = now
    yield from flush(shape[0])


def _tiles_by_row(plans: list[AxisTiles], shape: tuple[int, ...], mask: np.ndarray | None):
    """Rows of tiles as (z start, kept z begin, kept z end), and the y-x tiles to predict in
    each row as (y start, kept y range, x start, kept x range): with a mask, only the tiles whose
    kept centre holds a voxel of it (elsewhere every voxel is background)."""
    yx_tiles = [
        (ys, yk, xs, xk)
        for ys, yk in zip(plans[1].starts, plans[1].keep)
        for xs, xk in zip(plans[2].starts, plans[2].keep)
    ]
    rows = [(z, z0, min(z1, shape[0])) for z, (z0, z1) in zip(plans[0].starts, plans[0].keep)]
    if mask is None:
        return rows, [yx_tiles] * len(rows)
    return rows, [
        [t for t in yx_tiles if mask[z0:z1, t[1][0] : t[1][1], t[3][0] : t[3][1]].any()] for _, z0, z1 in rows
    ]


def _background_outside(slab: np.ndarray, mask: np.ndarray) -> None:
    """Scores of certain background (1, 0, 0...) at the voxels of a (z, y, x, classes) slab
    outside the (z, y, x) mask, in place."""
    outside = ~mask
    slab[outside] = 0
    slab[outside, 0] = 1


def _predict(model, tiles: np.ndarray, average_rotations: bool) -> np.ndarray:
    """Class scores (batch, z, y, x, n_classes) of normalised (batch, z, y, x) tiles."""
    # A compiled predict frees activations as it goes: ~1.1 kB per tile voxel
    # against ~1.8 kB for an eager call, which keeps every layer's output.
    scores = np.asarray(model.predict_on_batch(tiles[..., None]))
    if average_rotations:
        for axes in WEDGE_PRESERVING_ROTATIONS:
            batch_axes = tuple(axis + 1 for axis in axes)
            rotated = np.ascontiguousarray(np.flip(tiles, batch_axes))[..., None]
            scores += np.flip(np.asarray(model.predict_on_batch(rotated)), batch_axes)
        scores /= 1 + len(WEDGE_PRESERVING_ROTATIONS)
    return scores


def predict_scores(
    volume: np.ndarray, model, settings: SegmentationSettings | None = None, mask: np.ndarray | None = None
) -> np.ndarray:
    """Class scores of a whole tomogram in memory: float32 (z, y, x, n_classes).

    Same tiling, normalisation, blending, binning and ``mask`` as :func:`segment_tomogram`
    (``settings`` default: ``SegmentationSettings()``); meant for volumes whose
    scores fit in memory (tests, small tomograms).
    """
    settings = settings or SegmentationSettings()
    scores = np.concatenate([slab for _, slab in iter_score_slabs(volume, model, settings, mask=mask)])
    return downsample_scores(scores) if settings.bin_scores else scores


def labels_from_scores(scores: np.ndarray) -> np.ndarray:
    """Label map (uint8): the class of highest score at each voxel."""
    return np.argmax(scores, axis=-1).astype(np.uint8)


def downsample_scores(scores: np.ndarray) -> np.ndarray:
    """Average 2x2x2 blocks of a (z, y, x, n_classes) score array; odd edges repeat the last voxel."""
    pads = [(0, size % 2) for size in scores.shape[:3]] + [(0, 0)]
    scores = np.pad(scores, pads, mode="edge")
    z, y, x, n = scores.shape
    return scores.reshape(z // 2, 2, y // 2, 2, x // 2, 2, n).mean(axis=(1, 3, 5))


def unbin_positions(xyz_binned: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """Positions in voxels of a map binned ``factor`` times (2: ``bin_scores=True``) -> tomogram voxels.

    Binned voxel ``k`` covers tomogram voxels ``2k`` and ``2k + 1``, so its centre is ``2k + 0.5``;
    in general ``factor * k + (factor - 1) / 2``.
    """
    return factor * np.asarray(xyz_binned, dtype=float) + (factor - 1) / 2


def score_map_paths(scores_path: str | os.PathLike, n_classes: int) -> dict[int, Path]:
    """File of each particle class's score map: ``<stem>_class<k>.mrc`` for k = 1..n_classes-1."""
    scores_path = Path(scores_path)
    stem = scores_path.name[: -len(scores_path.suffix)] if scores_path.suffix else scores_path.name
    return {k: scores_path.with_name(f"{stem}_class{k}.mrc") for k in range(1, n_classes)}


def segment_tomogram(
    tomogram_path: str | os.PathLike,
    weights_path: str | os.PathLike,
    labels_path: str | os.PathLike,
    scores_path: str | os.PathLike | None = None,
    settings: SegmentationSettings | None = None,
    *,
    n_classes: int | None = None,
    mask: np.ndarray | None = None,
) -> dict:
    """Segment a tomogram file with a trained model; write the label map and score maps.

    Logs the tiles done at INFO level (``deepfinder.core.segment`` logger) at the end
    of each row of tiles and every :data:`PROGRESS_SECONDS` within a row.

    Parameters
    ----------
    tomogram_path : path
        MRC tomogram, read memory-mapped.
    weights_path : path
        ``*.weights.h5`` written by training (its JSON gives the class count).
    labels_path : path
        Output label map: class of highest score per voxel, one byte per voxel (MRC
        mode 0, which reads back as int8; class ids are < 128), voxel size of the
        tomogram (twice it with ``settings.bin_scores``).
    scores_path : path, optional
        If given, one float16 MRC per particle class, ``<stem>_class<k>.mrc``
        (k = 1..n_classes-1; the background score is 1 minus their sum).
        The label map and score maps replace earlier files only once all are
        complete; an output path naming an input file is refused
        (:class:`deepfinder.core.io.OutputOverwritesInput`) before any work.
    settings : SegmentationSettings, optional
        Tile geometry, rotation averaging, binning and precision (see
        :class:`deepfinder.core.settings.SegmentationSettings`); default
        ``SegmentationSettings()``. With ``bin_scores``, scores are averaged
        over 2x2x2 blocks before labelling: outputs are half size (edges
        rounded up), so positions found in them are in binned voxels
        (:func:`unbin_positions` maps them back). With ``precision`` bfloat16,
        label maps differ from float32 ones on a few boundary voxels.
    n_classes : int, optional
        Expected class count (background included); a model trained for another
        count is refused. Needed for weights without their JSON file.
    mask : (z, y, x) bool array, optional
        Where to search, on the tomogram's grid (:func:`deepfinder.core.roi.fit_mask`
        makes one from a mask file): outside it every voxel is background (label 0,
        particle scores 0) and tiles holding none of it are not predicted.

    Returns
    -------
    dict
        ``labels`` (Path), ``scores`` ({class: Path}, empty without ``scores_path``),
        ``seconds``, ``voxels_per_second`` (input voxels), ``tile_shape``, ``n_tiles``
        (predicted), ``n_tiles_skipped`` (outside the mask).
    """
    # The class count is known once the model is loaded: check every score map a model could have.
    refuse_overwriting_inputs(
        [labels_path, *(score_map_paths(scores_path, MAX_LABEL_CLASSES).values() if scores_path else ())],
        [tomogram_path, weights_path, metadata_path(weights_path)],
    )
    volume = read_volume(tomogram_path)
    if mask is not None and np.shape(mask) != volume.shape:
        raise ValueError(
            f"mask of shape {np.shape(mask)} is not on the grid of {tomogram_path} {volume.shape}"
        )
    settings = tiling_for(volume.shape, settings or SegmentationSettings())
    try:
        stats = tomogram_stats(volume)
    except InputError as error:
        raise InputError(f"Tomogram {tomogram_path}: {error}") from error
    model, _ = load_model(weights_path, n_classes, settings.precision)
    n_model_classes = output_classes(model)
    if n_model_classes > MAX_LABEL_CLASSES:
        raise ValueError(
            f"{weights_path} has {n_model_classes} classes; label maps hold at most {MAX_LABEL_CLASSES}"
        )
    voxel_size = read_voxel_size(tomogram_path) or 1.0
    factor = 2 if settings.bin_scores else 1
    out_shape = tuple(-(-size // factor) for size in volume.shape)
    score_paths = score_map_paths(scores_path, n_model_classes) if scores_path else {}
    # MRC mode 0 (8-bit) holds the labels in one byte per voxel; it reads back as int8.
    outputs = {0: (labels_path, np.int8), **{k: (path, np.float16) for k, path in score_paths.items()}}
    started = time.perf_counter()
    # Every map is written under a temporary name and all are renamed at the end, the label
    # map last: a run that stops early leaves the previous maps as they were.
    with contextlib.ExitStack() as stack:
        writers = {}
        for k, (path, dtype) in outputs.items():
            temporary = stack.enter_context(atomic_output(path))
            writers[k] = _SlabWriter(temporary, out_shape, dtype, voxel_size * factor)
            stack.callback(writers[k].close)
        for z_start, slab in iter_score_slabs(
            volume, model, settings, slab_alignment=factor, stats=stats, window_dtype=np.float16, mask=mask
        ):
            if settings.bin_scores:
                slab = downsample_scores(slab)
            z_out = z_start // factor
            writers[0].write(z_out, labels_from_scores(slab))
            for k in score_paths:
                writers[k].write(z_out, slab[..., k].astype(np.float16))
        for writer in writers.values():
            writer.finish()
    seconds = time.perf_counter() - started
    plans = [plan_axis(size, settings.patch_size, settings.crop_voxels) for size in volume.shape]
    n_tiles = sum(len(tiles) for tiles in _tiles_by_row(plans, volume.shape, mask)[1])
    return {
        "labels": Path(labels_path),
        "scores": score_paths,
        "seconds": seconds,
        "voxels_per_second": volume.size / seconds,
        "tile_shape": tuple(plan.length for plan in plans),
        "n_tiles": n_tiles,
        "n_tiles_skipped": math.prod(len(plan.starts) for plan in plans) - n_tiles,
    }


class _SlabWriter:
    """Writes consecutive z-slabs into an MRC file with plain file writes.

    Writing through a memory map would keep every written page resident; plain
    writes leave them to the page cache, so memory does not grow with the output.
    Header statistics are accumulated on the way and written by :meth:`finish`.
    """

    def __init__(self, path, shape, dtype, voxel_size):
        self.path = Path(path)
        mrc = create_volume(self.path, shape, dtype, voxel_size)
        self.offset = mrc.data.offset
        self.dtype = mrc.data.dtype  # what the file holds, which may be wider than asked
        mrc.close()
        self.plane_bytes = shape[1] * shape[2] * self.dtype.itemsize
        self.handle = open(self.path, "r+b")
        self.minimum, self.maximum, self.total, self.squares, self.count = np.inf, -np.inf, 0.0, 0.0, 0

    def write(self, z_start: int, slab: np.ndarray):
        self.handle.seek(self.offset + z_start * self.plane_bytes)
        self.handle.write(np.ascontiguousarray(slab, dtype=self.dtype).tobytes())
        values = slab.astype(np.float64)
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))
        self.total += float(values.sum())
        self.squares += float(np.square(values).sum())
        self.count += values.size

    def close(self):
        self.handle.close()

    def finish(self):
        """Close the file with the header statistics of what was written."""
        self.close()
        with mrcfile.mmap(self.path, mode="r+") as mrc:
            if self.count:
                mean = self.total / self.count
                mrc.header.dmin, mrc.header.dmax, mrc.header.dmean = self.minimum, self.maximum, mean
                mrc.header.rms = math.sqrt(max(self.squares / self.count - mean**2, 0.0))


def _read_tile(
    volume: np.ndarray, start: tuple[int, int, int], tile_shape: tuple[int, int, int], mean: float, std: float
) -> np.ndarray:
    """Normalised tile; edges beyond the volume (< 4 voxels) are mirrored."""
    stops = [min(s + length, size) for s, length, size in zip(start, tile_shape, volume.shape)]
    tile = normalize(volume[start[0] : stops[0], start[1] : stops[1], start[2] : stops[2]], mean, std)
    pads = [(0, s + length - stop) for s, length, stop in zip(start, tile_shape, stops)]
    if any(after for _, after in pads):
        tile = np.pad(tile, pads, mode="symmetric")
    return tile


def _tile_starts(padded: int, length: int, crop_voxels: int) -> list[int]:
    step = (length - 2 * crop_voxels) // POOLING_FACTOR * POOLING_FACTOR
    return list(range(0, padded - length, step)) + [padded - length]


def _ceil_to(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple
