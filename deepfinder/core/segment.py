"""Tiled segmentation: a tomogram in, a label map and per-voxel class scores out.

The tomogram is cut into overlapping tiles (edges multiples of 4, aligned on a
4-voxel grid so max-pooling sees the same grid as a whole-volume pass). Each
tile is predicted whole and only its centre is kept: at least ``crop_voxels``
is trimmed from every side that faces another tile, and the kept centres of
neighbouring tiles abut (where both could keep a voxel, the tile in which it
lies farther from the edge keeps it). Tiles touching the tomogram border keep
their outer edge: there the network's own zero padding applies, exactly as in
a whole-volume pass. With ``crop_voxels`` at least the network's receptive-field
radius the result equals a whole-volume prediction (see the tests); smaller
crops trade a little accuracy near tile seams for far less recomputation.

The host must keep up with the network (on a GPU the network is the fast part):
the network runs with a head on its device (:func:`prediction_head`) that takes
the argmax over classes, so one byte per voxel comes back (plus float16 scores
when score maps are asked for); a thread reads and normalises the next tiles
while the network runs; the kept centres are copied into a buffer of one row of
tiles (a slab of the full y-x extent, one tile deep), and a finished row is
written to disk by another thread while the next row is predicted. So memory
holds the network's activations for one batch of tiles, two row buffers and the
pages of the memory-mapped input, never whole volumes. Each run logs where its
time went (:class:`StageSeconds`).

With a coarse model (a second model trained at twice the voxel size), the tomogram
binned by 2 is segmented first and its scores kept in memory (an eighth of the
voxels per class); each batch of tiles then goes to the network with its region of
them, and the head averages the two before taking the argmax.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import mrcfile
import numpy as np

from .errors import InputError
from .io import atomic_output, create_volume, read_volume, read_voxel_size, refuse_overwriting_inputs
from .model import load_model, metadata_path, output_classes, read_metadata
from .normalize import normalize, tomogram_stats
from .rotations import WEDGE_PRESERVING_ROTATIONS
from .settings import AUTOMATIC_TILE_SIZE, POOLING_FACTOR, SegmentationSettings, SettingError
from .spectrum import PROFILE_KEY, match_amplitude_profile

log = logging.getLogger(__name__)

# Seconds between progress lines: often enough to watch, rare enough for large tomograms.
PROGRESS_SECONDS = 5
# z-slices handled at once when binning scores or writing score maps: the temporary copies stay small.
SLAB_DEPTH = 8
# Label maps hold one signed byte per voxel.
MAX_LABEL_CLASSES = 128


@dataclass(frozen=True)
class AxisTiles:
    """Tiling of one axis: tile starts, common tile length, kept range of each tile.

    The kept ranges abut, cover ``[0, padded size)`` and start on even voxels, so
    2x2x2 bins never straddle two tiles.
    """

    starts: tuple[int, ...]
    length: int
    keep: tuple[tuple[int, int], ...]


def plan_axis(size: int, patch_size: int, crop_voxels: int) -> AxisTiles:
    """Fewest equal tiles (edge <= ``patch_size``, multiple of 4) covering ``size`` voxels.

    Tile starts are multiples of 4; the kept centres of the tiles partition
    ``[0, size)`` rounded up to a multiple of 4; the kept centre of a tile
    excludes at least ``crop_voxels`` on each side that is not the volume border.
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
    # Neighbours may both keep [next start + crop, start + length - crop]: split it in the middle.
    bounds = [
        _even_middle(following + crop_voxels, start + length - crop_voxels)
        for start, following in zip(starts, starts[1:])
    ]
    keep = tuple(zip([0, *bounds], [*bounds, padded]))
    return AxisTiles(starts=tuple(starts), length=length, keep=keep)


def default_patch_size(shape: tuple[int, int, int]) -> int:
    """:data:`~deepfinder.core.settings.AUTOMATIC_TILE_SIZE`, or less for a tomogram whose
    largest edge is smaller."""
    return min(AUTOMATIC_TILE_SIZE, _ceil_to(max(shape), POOLING_FACTOR))


def tiling_for(shape: tuple[int, int, int], settings: SegmentationSettings) -> SegmentationSettings:
    """``settings`` with the tile size chosen for a volume of ``shape`` (when it is 0, automatic),
    checked: raise ``ValueError`` for tile geometries that cannot segment such a volume."""
    if not settings.patch_size:
        smallest = 2 * settings.crop_voxels + POOLING_FACTOR
        if default_patch_size(shape) < smallest:
            raise InputError(
                f"shape {tuple(shape)} is too small for tiles cropped by {settings.crop_voxels} "
                f"voxels per side: its largest edge must be >= {smallest - POOLING_FACTOR + 1} voxels, "
                "or give a smaller crop"
            )
        settings = dataclasses.replace(settings, patch_size=default_patch_size(shape))
    settings.check()
    patch_size = settings.patch_size
    if len(shape) != 3:
        raise InputError(f"Expected a 3D tomogram, got an array of shape {tuple(shape)}")
    if min(shape) < POOLING_FACTOR:
        raise InputError(f"shape {tuple(shape)} is too thin: every edge must be >= {POOLING_FACTOR} voxels")
    # Thin axes just get shorter tiles; a patch exceeding every edge is a mistake.
    largest = _ceil_to(max(shape), POOLING_FACTOR)
    if patch_size > largest:
        raise InputError(
            f"patch_size {patch_size} is larger than the tomogram (shape "
            f"{tuple(shape)}): use patch_size <= {largest}"
        )
    return settings


@dataclass
class StageSeconds:
    """Where the time of a segmentation run went, in seconds.

    ``network``, ``accumulation``, ``labels`` and the waits are wall time of the
    main thread; ``reading`` and ``writing`` are CPU time of the threads that run
    beside it (on a busy single core their wall time would count the other
    threads' turns too).
    """

    #: Forward passes of the network and its head, transfers to and from its device included.
    network: float = 0.0
    #: Copying the kept centres of the tiles' outputs into the row buffers.
    accumulation: float = 0.0
    #: Masking, and with binned scores the binning and the labels of the bins.
    labels: float = 0.0
    #: Main thread waiting for tiles to be read (input pages not in memory, or a slow reading thread).
    waiting_for_tiles: float = 0.0
    #: Main thread waiting for the previous row to be written.
    waiting_for_writes: float = 0.0
    #: Reading tiles of the tomogram and normalising them.
    reading: float = 0.0
    #: Writing the maps, their header statistics included.
    writing: float = 0.0

    def summary(self) -> str:
        """One line: each stage's seconds."""
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in dataclasses.asdict(self).items())


def prediction_head(
    model,
    *,
    labels: bool,
    scores_dtype: str | None,
    average_rotations: bool = False,
    coarse_classes: int | None = None,
):
    """The network with what the host needs computed on its device, so little comes back.

    Built with ``keras.ops`` only: it runs on any Keras backend.

    Parameters
    ----------
    model : keras.Model
        Normalised tiles (batch, z, y, x, 1) -> class scores (batch, z, y, x, n_classes).
    labels : bool
        Output the label map: int8 (batch, z, y, x), the class of highest score.
    scores_dtype : str, optional
        Output the class scores in this dtype ("float16" halves what comes back; labels
        are taken before the cast), classes first: (batch, n_classes, z, y, x), so that
        each class's map is contiguous for writing.
    average_rotations : bool
        Scores are the mean of the tile's and of its three rotations' by 180 degrees
        (:data:`deepfinder.core.rotations.WEDGE_PRESERVING_ROTATIONS`), each rotated back.
    coarse_classes : int, optional
        Take a second input, a coarse model's float16 class scores of the tiles' regions
        binned by 2 (batch, z/2, y/2, x/2, coarse_classes), and average the scores with
        them, each coarse voxel repeated 2x2x2, before the outputs are taken.

    Returns
    -------
    keras.Model
        Tiles (batch, z, y, x, 1) [and coarse scores] -> the outputs asked for, labels first.
    """
    import keras
    from keras import ops

    tiles = keras.Input(shape=(None, None, None, 1), name="tiles")
    scores = model(tiles)
    if average_rotations:
        for axes in WEDGE_PRESERVING_ROTATIONS:
            batch_axes = tuple(axis + 1 for axis in axes)
            # Adding 0 x the scores so far makes each rotation wait for the previous one: a graph
            # would run the independent passes at once, with the activations of all in memory.
            rotated = ops.flip(tiles, batch_axes) + 0.0 * ops.mean(scores)
            scores = scores + ops.flip(model(rotated), batch_axes)
        scores = scores / (1 + len(WEDGE_PRESERVING_ROTATIONS))
    inputs = [tiles]
    if coarse_classes:
        coarse = keras.Input(shape=(None, None, None, coarse_classes), dtype="float16", name="coarse_scores")
        inputs.append(coarse)
        upsampled = ops.cast(coarse, scores.dtype)
        for axis in (1, 2, 3):
            upsampled = ops.repeat(upsampled, 2, axis=axis)
        scores = (scores + upsampled) / 2
    outputs = []
    if labels:
        outputs.append(ops.cast(ops.argmax(scores, axis=-1), "int8"))
    if scores_dtype:
        outputs.append(ops.cast(ops.moveaxis(scores, -1, 1), scores_dtype))
    return keras.Model(inputs, outputs, name="prediction_head")


def iter_rows(
    volume: np.ndarray,
    head,
    settings: SegmentationSettings,
    *,
    stats: tuple[float, float] | None = None,
    mask: np.ndarray | None = None,
    seconds: StageSeconds | None = None,
    coarse: np.ndarray | None = None,
) -> Iterator[tuple[int, list[np.ndarray]]]:
    """Run ``head`` over the tiles of ``volume`` and yield its outputs one row of tiles at a time.

    Logs the tiles done at INFO level (``deepfinder.core.segment`` logger) at the end
    of each row of tiles and every :data:`PROGRESS_SECONDS` within a row.

    Parameters
    ----------
    volume : (z, y, x) array
        The tomogram (may be memory-mapped; tiles are read on demand, in a thread,
        while the network runs).
    head : keras.Model
        :func:`prediction_head` of a fully convolutional U-net.
    settings : SegmentationSettings
        Tile size (``patch_size``, 0: :func:`default_patch_size`), ``crop_voxels``
        dropped from each inner side of a tile and tiles per forward pass
        (``batch_size``); the others are the head's or the caller's.
    stats : (mean, std), optional
        Normalisation statistics; default :func:`tomogram_stats` of ``volume``.
    mask : (z, y, x) bool array, optional
        Where to search (:func:`deepfinder.core.roi.fit_mask`): tiles whose kept
        centre holds no mask voxel are not predicted, and every voxel outside the
        mask is background (label 0; scores 1 for the background, 0 for the others).
    seconds : StageSeconds, optional
        Adds the time of reading, network, accumulation, labels and waiting for tiles to it.
    coarse : (z, y, x, n_classes) float16 array, optional
        A coarse model's scores of ``volume`` binned by 2 (:func:`coarse_scores`), for a
        head with ``coarse_classes``: each batch of tiles comes with their regions of it.

    Yields
    ------
    (z_start, outputs)
        One array per output of the head, of the row's kept z-range starting at
        ``z_start``: (dz, y, x) labels, ([n_classes,] dz, y, x) scores, in the head's
        dtype; the rows are consecutive, cover the volume, and each is a new array.
    """
    seconds = seconds if seconds is not None else StageSeconds()
    shape = tuple(volume.shape)
    settings = tiling_for(shape, settings)
    mean, std = stats if stats is not None else tomogram_stats(volume)
    plans = [plan_axis(size, settings.patch_size, settings.crop_voxels) for size in shape]
    tile_shape = tuple(plan.length for plan in plans)
    rows, row_tiles = _tiles_by_row(plans, shape, mask)
    batches = [
        (row, tiles[first : first + settings.batch_size])
        for row, tiles in enumerate(row_tiles)
        for first in range(0, len(tiles), settings.batch_size)
    ]
    n_tiles, done = sum(len(tiles) for tiles in row_tiles), 0
    if mask is not None:
        n_all = len(rows) * len(plans[1].starts) * len(plans[2].starts)
        log.info("segment: %d of %d tiles hold voxels of the mask, the others are skipped", n_tiles, n_all)
    # Two batch buffers: the thread fills one while the network reads the other.
    buffers = [np.empty((settings.batch_size, *tile_shape), np.float32) for _ in range(2)]
    if coarse is not None:
        coarse_shape = (*(length // 2 for length in tile_shape), coarse.shape[-1])
        coarse_buffers = [np.empty((settings.batch_size, *coarse_shape), np.float16) for _ in range(2)]

    def read(index: int) -> list[np.ndarray]:
        started = time.thread_time()
        row, group = batches[index]
        batch = buffers[index % 2][: len(group)]
        for tile, (ys, _, xs, _) in zip(batch, group):
            _read_tile(volume, (rows[row][0], ys, xs), mean, std, out=tile)
        inputs = [batch[..., None]]
        if coarse is not None:
            coarse_batch = coarse_buffers[index % 2][: len(group)]
            for tile, (ys, _, xs, _) in zip(coarse_batch, group):
                _read_coarse_tile(coarse, (rows[row][0] // 2, ys // 2, xs // 2), out=tile)
            inputs.append(coarse_batch)
        seconds.reading += time.thread_time() - started
        return inputs

    started = last_report = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepfinder-read") as reader:
        pending = reader.submit(read, 0) if batches else None
        index = 0
        for row, (z_start, z_keep0, z_keep1) in enumerate(rows):
            # Every output ends with the (z, y, x) axes: label maps have no others, scores
            # have their classes first.
            outputs = [
                np.zeros((*output.shape[1:-3], z_keep1 - z_keep0, *shape[1:]), output.dtype)
                for output in head.outputs
            ]
            while index < len(batches) and batches[index][0] == row:
                group = batches[index][1]
                inputs = _wait(pending, seconds, "waiting_for_tiles")
                index += 1
                pending = reader.submit(read, index) if index < len(batches) else None
                clock = time.perf_counter()
                predicted = head.predict_on_batch(inputs if len(inputs) > 1 else inputs[0])
                predicted = [np.asarray(p) for p in (predicted if len(head.outputs) > 1 else [predicted])]
                seconds.network += time.perf_counter() - clock
                clock = time.perf_counter()
                for i, (ys, (y0, y1), xs, (x0, x1)) in enumerate(group):
                    y1, x1 = min(y1, shape[1]), min(x1, shape[2])
                    for output, tiles in zip(outputs, predicted):
                        output[..., y0:y1, x0:x1] = tiles[
                            i,
                            ...,
                            z_keep0 - z_start : z_keep1 - z_start,
                            y0 - ys : y1 - ys,
                            x0 - xs : x1 - xs,
                        ]
                seconds.accumulation += time.perf_counter() - clock
                done += len(group)
                now = time.perf_counter()
                row_done = index == len(batches) or batches[index][0] != row
                if row_done or now - last_report >= PROGRESS_SECONDS:
                    log.info(
                        "segment: %d/%d tiles of %s (%d/%d rows) done (%.0f s)",
                        *(done, n_tiles, tile_shape, row + row_done, len(rows), now - started),
                    )
                    last_report = now
            if mask is not None:
                clock = time.perf_counter()
                for output in outputs:
                    _background_outside(output, mask[z_keep0:z_keep1])
                seconds.labels += time.perf_counter() - clock
            yield z_keep0, outputs


def _wait(pending: Future, seconds: StageSeconds, stage: str):
    """The result of ``pending``, the time waited for it added to ``seconds.<stage>``."""
    clock = time.perf_counter()
    result = pending.result()
    setattr(seconds, stage, getattr(seconds, stage) + time.perf_counter() - clock)
    return result


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


def _background_outside(output: np.ndarray, mask: np.ndarray) -> None:
    """Certain background at the voxels of a (z, y, x) label map or (classes, z, y, x) score
    array outside the (z, y, x) mask, in place: label 0, scores (1, 0, 0...)."""
    outside = ~mask
    output[..., outside] = 0
    if output.ndim == 4:
        output[0, outside] = 1


def predict_scores(
    volume: np.ndarray, model, settings: SegmentationSettings | None = None, mask: np.ndarray | None = None
) -> np.ndarray:
    """Class scores of a whole tomogram in memory: float32 (z, y, x, n_classes).

    Same tiling, normalisation, rotations, binning and ``mask`` as :func:`segment_tomogram`
    (``settings`` default: ``SegmentationSettings()``; ``match_spectrum`` is refused: the model's
    training spectrum is in its file); meant for volumes whose scores fit in memory (tests, small
    tomograms).
    """
    settings = settings or SegmentationSettings()
    if settings.match_spectrum:
        raise ValueError(
            "predict_scores has no training spectrum to match: filter the volume with "
            "spectrum.match_amplitude_profile first"
        )
    head = prediction_head(
        model, labels=False, scores_dtype="float32", average_rotations=settings.average_rotations
    )
    rows = [outputs[0] for _, outputs in iter_rows(volume, head, settings, mask=mask)]
    scores = np.moveaxis(np.concatenate(rows, axis=1), 0, -1)
    return downsample_scores(scores) if settings.bin_scores else scores


def downsample_scores(scores: np.ndarray) -> np.ndarray:
    """Average 2x2x2 blocks of a (z, y, x, n_classes) score array, in float32 (float16 scores
    included); odd edges repeat the last voxel."""
    pads = [(0, size % 2) for size in scores.shape[:3]] + [(0, 0)]
    scores = np.pad(scores, pads, mode="edge")
    z, y, x, n = scores.shape
    return scores.reshape(z // 2, 2, y // 2, 2, x // 2, 2, n).mean(axis=(1, 3, 5), dtype=np.float32)


def unbin_positions(xyz_binned: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """Positions in voxels of a map binned ``factor`` times (2: ``bin_scores=True``) -> tomogram voxels.

    Binned voxel ``k`` covers tomogram voxels ``2k`` and ``2k + 1``, so its centre is ``2k + 0.5``;
    in general ``factor * k + (factor - 1) / 2``.
    """
    return factor * np.asarray(xyz_binned, dtype=float) + (factor - 1) / 2


def bin_positions(xyz: np.ndarray, factor: float = 2.0) -> np.ndarray:
    """Positions in tomogram voxels -> voxels of the tomogram binned ``factor`` times (the inverse
    of :func:`unbin_positions`)."""
    return (np.asarray(xyz, dtype=float) - (factor - 1) / 2) / factor


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
    coarse_weights_path: str | os.PathLike | None = None,
) -> dict:
    """Segment a tomogram file with a trained model; write the label map and score maps.

    Logs the tiles done at INFO level (``deepfinder.core.segment`` logger) at the end
    of each row of tiles and every :data:`PROGRESS_SECONDS` within a row, and at the
    end where the time went (:class:`StageSeconds`).

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
    coarse_weights_path : path, optional
        A second model, trained on the same classes at twice the voxel size (tomograms
        binned by 2): it segments the tomogram binned by 2 (means of 2x2x2 voxels), and
        its scores, each voxel repeated 2x2x2, are averaged with the model's before
        labelling. The coarse model sees twice the context, the model twice the detail.
        Refused (:class:`InputError`, before any output) when the two models' class names
        differ or, both voxel sizes known, the coarse one is not twice the model's.

    Returns
    -------
    dict
        ``labels`` (Path), ``scores`` ({class: Path}, empty without ``scores_path``),
        ``seconds``, ``voxels_per_second`` (input voxels), ``stage_seconds`` (the fields
        of :class:`StageSeconds`), ``tile_shape``, ``n_tiles`` (predicted),
        ``n_tiles_skipped`` (outside the mask).
    """
    # The class count is known once the model is loaded: check every score map a model could have.
    models = [weights_path] if coarse_weights_path is None else [weights_path, coarse_weights_path]
    refuse_overwriting_inputs(
        [labels_path, *(score_map_paths(scores_path, MAX_LABEL_CLASSES).values() if scores_path else ())],
        [tomogram_path, *models, *(metadata_path(path) for path in models)],
    )
    if coarse_weights_path is not None:
        check_coarse_model(weights_path, coarse_weights_path)
    volume = read_volume(tomogram_path)
    if mask is not None and np.shape(mask) != volume.shape:
        raise ValueError(
            f"mask of shape {np.shape(mask)} is not on the grid of {tomogram_path} {volume.shape}"
        )
    try:
        settings = tiling_for(volume.shape, settings or SegmentationSettings())
    except SettingError:
        raise
    except InputError as error:
        raise InputError(f"Tomogram {tomogram_path}: {error}") from error
    target_profile = training_amplitude_profile(weights_path) if settings.match_spectrum else None
    try:
        if target_profile is not None:
            clock = time.perf_counter()
            volume = match_amplitude_profile(volume, target_profile)
            seconds_taken = time.perf_counter() - clock
            log.info("segment: filtered to the training tomograms' spectrum in %.1f s", seconds_taken)
        stats = tomogram_stats(volume)
    except InputError as error:
        raise InputError(f"Tomogram {tomogram_path}: {error}") from error
    model, _ = load_model(weights_path, n_classes, settings.precision)
    n_model_classes = output_classes(model)
    if n_model_classes > MAX_LABEL_CLASSES:
        raise ValueError(
            f"{weights_path} has {n_model_classes} classes; label maps hold at most {MAX_LABEL_CLASSES}"
        )
    seconds = StageSeconds()
    started = time.perf_counter()
    coarse = None
    if coarse_weights_path is not None:
        coarse = coarse_scores(volume, coarse_weights_path, n_model_classes, settings, seconds)
        log.info("segment: coarse model done in %.1f s", time.perf_counter() - started)
    voxel_size = read_voxel_size(tomogram_path) or 1.0
    factor = 2 if settings.bin_scores else 1
    out_shape = tuple(-(-size // factor) for size in volume.shape)
    score_paths = score_map_paths(scores_path, n_model_classes) if scores_path else {}
    # MRC mode 0 (8-bit) holds the labels in one byte per voxel; it reads back as int8.
    outputs = {0: (labels_path, np.int8), **{k: (path, np.float16) for k, path in score_paths.items()}}
    # Binning averages scores, so binned labels are taken here, from the binned scores.
    head = prediction_head(
        model,
        labels=not settings.bin_scores,
        scores_dtype="float16" if score_paths or settings.bin_scores else None,
        average_rotations=settings.average_rotations,
        coarse_classes=None if coarse is None else n_model_classes,
    )
    # Every map is written under a temporary name and all are renamed at the end, the label
    # map last: a run that stops early leaves the previous maps as they were.
    with contextlib.ExitStack() as stack:
        writers = {}
        for k, (path, dtype) in outputs.items():
            temporary = stack.enter_context(atomic_output(path))
            writers[k] = _SlabWriter(temporary, out_shape, dtype, voxel_size * factor)
            stack.callback(writers[k].close)
        # Entered last, left first: its writes are over before the files close.
        writer = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="deepfinder-write"))
        written = None
        rows = iter_rows(volume, head, settings, stats=stats, mask=mask, seconds=seconds, coarse=coarse)
        for z_start, row in rows:
            if settings.bin_scores:
                clock = time.perf_counter()
                row = binned_row(row[0])
                seconds.labels += time.perf_counter() - clock
            if written is not None:
                _wait(written, seconds, "waiting_for_writes")
            written = writer.submit(_write_row, writers, z_start // factor, row, seconds)
        if written is not None:
            _wait(written, seconds, "waiting_for_writes")
        for slab_writer in writers.values():
            slab_writer.finish()
    elapsed = time.perf_counter() - started
    log.info("segment: %.1f s in all: %s", elapsed, seconds.summary())
    plans = [plan_axis(size, settings.patch_size, settings.crop_voxels) for size in volume.shape]
    n_tiles = sum(len(tiles) for tiles in _tiles_by_row(plans, volume.shape, mask)[1])
    return {
        "labels": Path(labels_path),
        "scores": score_paths,
        "seconds": elapsed,
        "voxels_per_second": volume.size / elapsed,
        "stage_seconds": dataclasses.asdict(seconds),
        "tile_shape": tuple(plan.length for plan in plans),
        "n_tiles": n_tiles,
        "n_tiles_skipped": math.prod(len(plan.starts) for plan in plans) - n_tiles,
    }


def check_coarse_model(weights_path: str | os.PathLike, coarse_weights_path: str | os.PathLike) -> None:
    """Refuse a coarse model that does not pair with the model (see :func:`segment_tomogram`)."""
    fine, coarse = read_metadata(weights_path), read_metadata(coarse_weights_path)
    names = fine.get("class_names"), coarse.get("class_names")
    if None not in names and list(names[0]) != list(names[1]):
        raise InputError(
            f"The coarse model {coarse_weights_path} was trained for the classes {names[1]}, the model "
            f"{weights_path} for {names[0]}: train both on the same classes, in the same order"
        )
    sizes = fine.get("voxel_size"), coarse.get("voxel_size")
    if None not in sizes and not math.isclose(sizes[1], 2 * sizes[0], rel_tol=0.01):
        raise InputError(
            f"The coarse model {coarse_weights_path} was trained at {sizes[1]:g} A/voxel, the model "
            f"{weights_path} at {sizes[0]:g}: the coarse model must be trained at twice its voxel size "
            f"({2 * sizes[0]:g} A/voxel: train it with binning 2 on the model's inputs)"
        )


def bin_volume(volume: np.ndarray) -> np.ndarray:
    """``volume`` binned by 2: float32 means of 2x2x2 voxels (odd edges repeat the last voxel),
    read a few z-slices at a time (it may be memory-mapped)."""
    step = 2 * SLAB_DEPTH
    return np.concatenate(
        [
            downsample_scores(np.asarray(volume[z : z + step], dtype=np.float32)[..., None])[..., 0]
            for z in range(0, volume.shape[0], step)
        ]
    )


def coarse_scores(
    volume: np.ndarray,
    weights_path: str | os.PathLike,
    n_classes: int,
    settings: SegmentationSettings,
    seconds: StageSeconds,
) -> np.ndarray:
    """Class scores, float16 (z, y, x, n_classes), of a model trained at twice the voxel size on
    ``volume`` binned by 2, normalised by its own statistics as its training tomograms were; the
    tiles and rotations of ``settings`` (automatic tiles where they exceed the binned volume)."""
    binned = bin_volume(volume)
    model, _ = load_model(weights_path, n_classes, settings.precision)
    head = prediction_head(
        model, labels=False, scores_dtype="float16", average_rotations=settings.average_rotations
    )
    if settings.patch_size > _ceil_to(max(binned.shape), POOLING_FACTOR):
        settings = dataclasses.replace(settings, patch_size=0)
    rows = [outputs[0] for _, outputs in iter_rows(binned, head, settings, seconds=seconds)]
    return np.ascontiguousarray(np.moveaxis(np.concatenate(rows, axis=1), 0, -1))


def binned_row(scores: np.ndarray) -> list[np.ndarray]:
    """The label map (int8) and class scores of a row of scores (n_classes, dz, y, x) averaged
    over 2x2x2 voxels, a few z-slices at a time."""
    step = 2 * SLAB_DEPTH
    binned = [
        downsample_scores(np.moveaxis(scores[:, z : z + step], 0, -1))
        for z in range(0, scores.shape[1], step)
    ]
    scores = np.moveaxis(np.concatenate(binned), -1, 0)
    labels = [np.argmax(scores[:, z : z + step], axis=0) for z in range(0, scores.shape[1], step)]
    return [np.concatenate(labels).astype(np.int8), scores]


def training_amplitude_profile(weights_path: str | os.PathLike) -> np.ndarray:
    """The mean amplitude profile of a model's training tomograms, from its JSON file; refuses
    models trained without one."""
    profile = read_metadata(weights_path).get(PROFILE_KEY)
    if profile is None:
        raise InputError(
            f"{weights_path} does not hold the amplitude spectrum of its training tomograms (trained "
            "by an earlier version, or upstream DeepFinder weights): segment without spectrum "
            "matching, or train it again"
        )
    return np.asarray(profile, dtype=float)


def _write_row(writers: dict, z_start: int, row: list[np.ndarray], seconds: StageSeconds) -> None:
    """Write the label map (``row[0]``) and, with score maps, each particle class's scores
    (``row[1][k]``) of one row of tiles from z-index ``z_start``; CPU time to ``seconds.writing``."""
    started = time.thread_time()
    writers[0].write(z_start, row[0])
    for k in writers.keys() - {0}:
        for z in range(0, row[1].shape[1], SLAB_DEPTH):
            writers[k].write(z_start + z, row[1][k, z : z + SLAB_DEPTH])
    seconds.writing += time.thread_time() - started


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
        slab = np.ascontiguousarray(slab, dtype=self.dtype)
        os.pwrite(self.handle.fileno(), memoryview(slab).cast("B"), self.offset + z_start * self.plane_bytes)
        if slab.dtype.itemsize == 1:
            # Counting the 256 byte values is exact and much faster than float64 sums; plane by
            # plane, as bincount makes an 8-byte copy of what it counts.
            counts = sum(np.bincount(plane.view(np.uint8).ravel(), minlength=256) for plane in slab)
            values = np.arange(256, dtype=np.uint8).view(slab.dtype).astype(np.float64)
            values, counts = values[counts > 0], counts[counts > 0]
            total, squares = float(counts @ values), float(counts @ values**2)
        else:
            values = slab.astype(np.float64).ravel()
            total, squares = float(values.sum()), float(values @ values)
        self.minimum = min(self.minimum, float(values.min()))
        self.maximum = max(self.maximum, float(values.max()))
        self.total += total
        self.squares += squares
        self.count += slab.size

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
    volume: np.ndarray, start: tuple[int, int, int], mean: float, std: float, out: np.ndarray
) -> None:
    """Normalise the tile of ``out``'s shape at ``start`` into ``out``; edges beyond the
    volume (< 4 voxels) are mirrored."""
    stops = [min(s + length, size) for s, length, size in zip(start, out.shape, volume.shape)]
    region = volume[start[0] : stops[0], start[1] : stops[1], start[2] : stops[2]]
    if region.shape == out.shape:
        normalize(region, mean, std, out=out)
    else:
        pads = [(0, s + length - stop) for s, length, stop in zip(start, out.shape, stops)]
        out[...] = np.pad(normalize(region, mean, std), pads, mode="symmetric")


def _read_coarse_tile(coarse: np.ndarray, start: tuple[int, int, int], out: np.ndarray) -> None:
    """Copy the region of the (z, y, x, n) ``coarse`` scores of ``out``'s shape at ``start`` into
    ``out``; beyond the edges (where the tile's voxels are not kept) the last voxel repeats."""
    stops = [min(s + length, size) for s, length, size in zip(start, out.shape[:3], coarse.shape[:3])]
    region = coarse[start[0] : stops[0], start[1] : stops[1], start[2] : stops[2]]
    if region.shape == out.shape:
        out[...] = region
    else:
        pads = [(0, s + length - stop) for s, length, stop in zip(start, out.shape[:3], stops)] + [(0, 0)]
        out[...] = np.pad(region, pads, mode="edge")


def _even_middle(low: int, high: int) -> int:
    """An even integer of ``[low, high]`` at or just below its middle; ``high - low`` is even,
    so one exists, as it does for tiles on a 4-voxel grid."""
    return (low + high) // 4 * 2


def _tile_starts(padded: int, length: int, crop_voxels: int) -> list[int]:
    step = (length - 2 * crop_voxels) // POOLING_FACTOR * POOLING_FACTOR
    return list(range(0, padded - length, step)) + [padded - length]


def _ceil_to(value: int, multiple: int) -> int:
    return -(-int(value) // multiple) * multiple
