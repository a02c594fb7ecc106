"""Training patches: where to cut them, how to balance classes, how to augment them.

Patches are centred on annotated particles plus a random shift, kept inside
the volume (paper, Methods). Bootstrap sampling draws the classes uniformly so
that rare classes are seen as often as abundant ones. Patches are augmented by
180-degree rotations that keep the missing wedge and the hand
(:mod:`deepfinder.core.rotations`): about the tilt axis only, as the paper, or
about any of the three axes; optionally, white noise lowers their SNR.

Every function takes the random generator it uses, so a batch sequence is
fixed by its seed. Volumes are read patch by patch (memory-mapped files stay
on disk). Threads cut batches ahead of training (:func:`training_batches`),
a bounded number of them, drawn in the same order as one at a time.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from itertools import islice

import numpy as np

from .errors import InputError
from .normalize import normalize
from .particles import ParticleTable
from .rotations import TILT_AXIS, WEDGE_PRESERVING_ROTATIONS, rotate_180
from .settings import ROTATIONS

# Two threads cut about twice the patches a GPU trains on at the default settings
# (benchmarks/bench_sampler.py); four batches in flight keep both busy.
SAMPLER_WORKERS = 2
BATCHES_AHEAD = 4


def particles_inside(
    particles: ParticleTable, shape_zyx: tuple[int, int, int], source: str = ""
) -> ParticleTable:
    """The particles whose nearest voxel lies inside a volume of ``shape_zyx``.

    The others are dropped with a warning that counts them (``source`` names
    the tomogram in the message).
    """
    index = np.rint(particles.zyx)
    inside = np.all((index >= 0) & (index < np.array(shape_zyx)), axis=1)
    n_out = int(np.count_nonzero(~inside))
    if n_out:
        where = f" of {source}" if source else ""
        warnings.warn(
            f"{n_out} of {len(particles)} particles lie outside the volume{where} "
            f"(z, y, x) = {tuple(shape_zyx)} and were skipped; check the coordinates' "
            "units (voxels) and binning",
            stacklevel=2,
        )
    return particles.select(inside)


def check_labels_at_particles(
    label_map: np.ndarray, particles: ParticleTable, patch_size: int, label_source: str = "the label map"
) -> None:
    """Refuse a label map without a voxel of a particle's class in the patches centred on that class's
    particles.

    Training patches are centred on the particles, so the network would learn such a class as
    background: the label map is of another tomogram, or the positions are at another voxel size.

    Parameters
    ----------
    label_map : (z, y, x) int array
        Class labels, 0 for background.
    particles : ParticleTable
        The particles inside the volume (:func:`particles_inside`); class 0 rows (background
        points) are not checked.
    patch_size : int
        Edge of a training patch, voxels; at most the smallest edge of ``label_map``.
    label_source : str
        The label map's name in the message.

    Raises
    ------
    InputError
        Naming the class and the number of its particles.
    """
    # Centred (no shift), so the random generator draws nothing.
    origins = patch_origins(particles.zyx, label_map.shape, patch_size, 0, np.random.default_rng(0))
    for class_id in sorted(set(particles.class_id.tolist()) - {0}):
        rows = np.flatnonzero(particles.class_id == class_id)
        if not any(
            np.any(label_map[z : z + patch_size, y : y + patch_size, x : x + patch_size] == class_id)
            for z, y, x in origins[rows]
        ):
            raise InputError(
                f"{label_source} holds no voxel of class {class_id} in the {patch_size}-voxel patches "
                f"centred on the {len(rows)} particle(s) of that class: give the label map painted from "
                "these particles (deepfinder targets), with the positions at the tomogram's voxel size"
            )


def draw_rows(class_ids: np.ndarray, n: int, rng: np.random.Generator, bootstrap: bool = True) -> np.ndarray:
    """Indices of ``n`` particles to centre patches on.

    Parameters
    ----------
    class_ids : (m,) int array
        Class of each candidate particle.
    n : int
        Number of rows to draw (with replacement).
    rng : numpy.random.Generator
    bootstrap : bool
        If True, draw the classes present in rounds (each class once per round,
        in random order), then a particle of each drawn class uniformly: ``n``
        at least the number of classes holds every class. Otherwise draw
        particles uniformly (classes in proportion to their abundance).

    Returns
    -------
    (n,) int array
    """
    class_ids = np.asarray(class_ids)
    if not len(class_ids):
        raise ValueError("No particles to sample patches from")
    if not bootstrap:
        return rng.integers(0, len(class_ids), size=n)
    classes, inverse = np.unique(class_ids, return_inverse=True)
    by_class = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[by_class], np.arange(len(classes)))
    counts = np.bincount(inverse, minlength=len(classes))
    rounds = -(-n // len(classes))
    chosen = np.concatenate([rng.permutation(len(classes)) for _ in range(rounds)])[:n]
    return by_class[starts[chosen] + (rng.random(n) * counts[chosen]).astype(int)]


def patch_origins(
    centres_zyx: np.ndarray,
    shape_zyx: tuple[int, int, int],
    patch_size: int,
    shift_voxels: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Corners of patches centred on ``centres_zyx`` plus a random shift, kept inside the volume.

    Parameters
    ----------
    centres_zyx : (n, 3) float array
        Patch centres, (z, y, x) voxels.
    shape_zyx : tuple of 3 int
        Volume shape; each edge must be >= ``patch_size``.
    patch_size : int
        Patch edge in voxels.
    shift_voxels : int
        Each axis is shifted by an integer drawn uniformly in
        ``[-shift_voxels, shift_voxels]``, so the particle is not always in
        the middle of the patch.
    rng : numpy.random.Generator

    Returns
    -------
    (n, 3) int array
        Index of each patch's first voxel, (z, y, x).
    """
    centres = np.rint(np.asarray(centres_zyx, dtype=float)).astype(int).reshape(-1, 3)
    shift = rng.integers(-shift_voxels, shift_voxels + 1, size=centres.shape) if shift_voxels else 0
    highest = np.array(shape_zyx) - patch_size
    if np.any(highest < 0):
        raise ValueError(f"Patch size {patch_size} is larger than the volume {tuple(shape_zyx)}")
    return np.clip(centres + shift - patch_size // 2, 0, highest)


def cut_patch(volume: np.ndarray, origin_zyx: np.ndarray, patch_size: int) -> np.ndarray:
    """The cube of edge ``patch_size`` whose first voxel is ``origin_zyx``.

    A view: of a memory-mapped file, only the voxels later used are read.
    """
    z, y, x = (int(v) for v in origin_zyx)
    return np.asarray(volume[z : z + patch_size, y : y + patch_size, x : x + patch_size])


def make_batch(
    volumes: Sequence[np.ndarray],
    label_maps: Sequence[np.ndarray],
    stats: Sequence[tuple[float, float]],
    patch_size: int,
    tomo_index: np.ndarray,
    origins_zyx: np.ndarray,
    rotations: np.ndarray | None = None,
    noise_std: np.ndarray | None = None,
    noise_seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut, normalise and optionally rotate one batch of patches and add noise to it.

    Parameters
    ----------
    volumes, label_maps : sequences of (z, y, x) arrays
        Tomograms (any dtype, memory-mapped is fine) and their label maps.
    stats : sequence of (mean, std)
        Per-tomogram normalisation (:func:`deepfinder.core.normalize.tomogram_stats`),
        the same that segmentation applies.
    patch_size : int
    tomo_index : (b,) int array
        Tomogram of each patch.
    origins_zyx : (b, 3) int array
        First voxel of each patch.
    rotations : (b,) int array, optional
        Each patch's rotation, an index into
        :data:`deepfinder.core.rotations.WEDGE_PRESERVING_ROTATIONS`; -1 keeps it as it is.
    noise_std : (b,) float array, optional
        Standard deviation of the white Gaussian noise added to each normalised patch, in units
        of the tomogram's; the sum is divided by ``sqrt(1 + noise_std**2)``, so that its variance
        stays the tomogram's while its SNR drops.
    noise_seed : int
        Seeds the noise, so that a batch is the same whichever thread cuts it.

    Returns
    -------
    x : (b, P, P, P, 1) float32
        Normalised intensities; a patch with NaN or infinite values raises
        ``ValueError``.
    y : (b, P, P, P) uint8
        Labels.
    """
    n = len(tomo_index)
    x = np.empty((n, patch_size, patch_size, patch_size, 1), dtype=np.float32)
    y = np.empty((n, patch_size, patch_size, patch_size), dtype=np.uint8)
    noise = None if noise_std is None else np.random.default_rng(noise_seed)
    for i, (t, origin) in enumerate(zip(tomo_index, origins_zyx)):
        patch = normalize(cut_patch(volumes[t], origin, patch_size), *stats[t])
        # Tomogram statistics come from a subsample, so NaNs elsewhere surface only here.
        if not np.all(np.isfinite(patch)):
            raise ValueError(
                f"Tomogram {t} has NaN or infinite values in the patch at (z, y, x) "
                f"{tuple(int(v) for v in origin)}: fix or re-reconstruct it"
            )
        labels = cut_patch(label_maps[t], origin, patch_size)
        if rotations is not None and rotations[i] >= 0:
            # Reading a memory-mapped file backwards costs several times a forward copy.
            patch, labels = rotate_180(patch, rotations[i]), rotate_180(np.array(labels), rotations[i])
        if noise is not None:
            std = float(noise_std[i])
            patch = (patch + noise.normal(0.0, std, patch.shape)) / np.sqrt(1.0 + std**2)
        x[i, ..., 0] = patch
        y[i] = labels
    return x, y


def draw_patches(
    tomo_index: np.ndarray,
    centres_zyx: np.ndarray,
    class_ids: np.ndarray,
    shapes_zyx: Sequence[tuple[int, int, int]],
    n: int,
    *,
    patch_size: int,
    shift_voxels: int,
    rng: np.random.Generator,
    bootstrap: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Tomogram and first voxel of ``n`` patches, each on a drawn particle plus a random shift.

    Parameters
    ----------
    tomo_index : (m,) int array
        Tomogram of each candidate particle (an index into ``shapes_zyx``).
    centres_zyx : (m, 3) float array
        Particle centres, (z, y, x) voxels.
    class_ids : (m,) int array
        Class of each particle (see :func:`draw_rows`).
    shapes_zyx : sequence of tuple of 3 int
        Shape of each tomogram.
    n : int
        Number of patches.
    patch_size, shift_voxels : int
        Patch edge and largest shift per axis, voxels (see :func:`patch_origins`).
    rng : numpy.random.Generator
    bootstrap : bool
        Draw the classes uniformly (see :func:`draw_rows`).

    Returns
    -------
    tomo_index : (n,) int array
        Tomogram of each patch.
    origins_zyx : (n, 3) int array
        First voxel of each patch.
    """
    rows = draw_rows(class_ids, n, rng, bootstrap)
    patch_tomos = np.asarray(tomo_index)[rows]
    origins = np.empty((n, 3), dtype=int)
    for t in np.unique(patch_tomos):
        here = patch_tomos == t
        origins[here] = patch_origins(centres_zyx[rows[here]], shapes_zyx[t], patch_size, shift_voxels, rng)
    return patch_tomos, origins


def cut_batches(
    volumes: Sequence[np.ndarray],
    label_maps: Sequence[np.ndarray],
    stats: Sequence[tuple[float, float]],
    patches: Iterable[tuple],
    patch_size: int,
    *,
    workers: int = SAMPLER_WORKERS,
    batches_ahead: int = BATCHES_AHEAD,
) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """:func:`make_batch` of each plan of ``patches``, in order.

    With ``workers`` threads, batches are cut while the consumer works on
    earlier ones (reading memory-mapped files and numpy's copies release the
    GIL). ``patches`` is iterated in the consumer's thread, one batch at a
    time as batches are handed out, so a random generator behind it is used
    in the same order as without workers and the batches are the same.

    Parameters
    ----------
    volumes, label_maps, stats, patch_size
        As in :func:`make_batch`.
    patches : iterable of tuples
        One batch each: the arguments of :func:`make_batch` from ``tomo_index`` on
        (``tomo_index, origins_zyx`` and optionally ``rotations, noise_std, noise_seed``).
    workers : int
        Threads cutting batches; 0 cuts each batch in the consumer's thread
        when it is asked for.
    batches_ahead : int
        Most batches cut or being cut that the consumer has not taken yet,
        which bounds the memory held (at least 1; ``workers`` or more keeps
        every worker busy).

    Returns
    -------
    generator of (x, y)
        As :func:`make_batch` returns them. An error raised while cutting a
        batch is raised by the generator when that batch is due. Closing it
        (or leaving a ``with contextlib.closing(...)`` block) cancels the
        batches not started and returns once the running ones end: no
        thread is left behind.
    """
    if workers < 0:
        raise ValueError(f"workers must be 0 (no threads) or more, not {workers}")
    if batches_ahead < 1:
        raise ValueError(f"batches_ahead must be at least 1, not {batches_ahead}")
    cut = partial(make_batch, volumes, label_maps, stats, patch_size)
    if workers == 0:
        return (cut(*plan) for plan in patches)
    return _cut_in_threads(cut, iter(patches), workers, batches_ahead)


def _cut_in_threads(
    cut: Callable[..., tuple[np.ndarray, np.ndarray]], plans: Iterator, workers: int, batches_ahead: int
) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """:func:`cut_batches` with ``workers`` threads."""
    pending: deque[Future] = deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deepfinder-patches") as pool:
        try:
            while True:
                for plan in islice(plans, batches_ahead - len(pending)):
                    pending.append(pool.submit(cut, *plan))
                if not pending:
                    return
                yield pending.popleft().result()
        finally:
            # Leaving the pool waits for the running batches only (a few milliseconds).
            for future in pending:
                future.cancel()


def training_batches(
    volumes: Sequence[np.ndarray],
    label_maps: Sequence[np.ndarray],
    stats: Sequence[tuple[float, float]],
    tomo_index: np.ndarray,
    centres_zyx: np.ndarray,
    class_ids: np.ndarray,
    *,
    patch_size: int,
    batch_size: int,
    n_batches: int,
    rng: np.random.Generator,
    bootstrap: bool = True,
    shift_voxels: int,
    rotations: str = "tilt_axis",
    added_noise: float = 0.0,
    workers: int = SAMPLER_WORKERS,
    batches_ahead: int = BATCHES_AHEAD,
) -> Generator[tuple[np.ndarray, np.ndarray], None, None]:
    """Yield ``n_batches`` augmented training batches ``(x, y)`` (see :func:`make_batch`).

    Each batch draws its patches with :func:`draw_patches`. ``rotations``
    ``"tilt_axis"`` turns half of them by 180 degrees about the tilt axis;
    ``"three_axes"`` leaves a quarter as they are and turns a quarter each
    about z, y and x. With ``added_noise`` > 0, each patch gets white noise of
    a standard deviation drawn uniformly up to it (see :func:`make_batch`).
    The batches are cut
    by :func:`cut_batches` with ``workers`` threads, ``batches_ahead`` of the
    consumer; for a given ``rng`` they are the same whatever ``workers``.
    Close the generator when stopping before the last batch.
    """
    if rotations not in ROTATIONS:
        raise ValueError(f"rotations must be one of {', '.join(ROTATIONS)}, not {rotations!r}")
    shapes = [volume.shape for volume in volumes]

    def draws():
        for _ in range(n_batches):
            patch_tomos, origins = draw_patches(
                tomo_index,
                centres_zyx,
                class_ids,
                shapes,
                batch_size,
                patch_size=patch_size,
                shift_voxels=shift_voxels,
                rng=rng,
                bootstrap=bootstrap,
            )
            if rotations == "tilt_axis":
                turns = np.where(rng.random(batch_size) < 0.5, TILT_AXIS, -1)
            else:
                turns = rng.integers(-1, len(WEDGE_PRESERVING_ROTATIONS), batch_size)
            if added_noise:
                noise_std = rng.uniform(0, added_noise, batch_size)
                yield patch_tomos, origins, turns, noise_std, rng.integers(2**62)
            else:
                yield patch_tomos, origins, turns

    return cut_batches(
        volumes, label_maps, stats, draws(), patch_size, workers=workers, batches_ahead=batches_ahead
    )
