"""The ``deepfinder`` command line: argument parsing only, each subcommand calls the engine."""

from __future__ import annotations

import argparse


def _add_simulate(subparsers) -> None:
    from .simulate import PRESETS, SHREC19_DIR_VARIABLE

    parser = subparsers.add_parser(
        "simulate",
        help="simulate tomograms with known particles (tomogram, particle table, label and occupancy maps)",
    )
    parser.add_argument(
        "--preset",
        default="tiny",
        choices=list(PRESETS),
        help="; ".join(f"{name}: {preset.description}" for name, preset in PRESETS.items()),
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--tomograms", type=int, default=None, help="number of tomograms (preset default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same data")
    parser.add_argument(
        "--snr", type=float, default=None, help="signal-to-noise ratio of the projections (preset default)"
    )
    parser.add_argument(
        "--templates",
        nargs="+",
        default=None,
        metavar="MRC",
        help="density maps to use as classes instead of the built-in shapes",
    )
    parser.add_argument(
        "--template-voxel-size",
        type=float,
        default=None,
        help="voxel size (Angstrom) of the templates if their headers lack it",
    )
    parser.add_argument(
        "--shrec-dir",
        default=None,
        help="bench preset: the folder holding shrec19/ and templates_10A/ "
        f"(default: ${SHREC19_DIR_VARIABLE})",
    )
    parser.set_defaults(func=_run_simulate)


def _run_simulate(args) -> None:
    from .simulate import simulate_dataset

    result = simulate_dataset(
        args.out,
        preset=args.preset,
        n_tomograms=args.tomograms,
        seed=args.seed,
        snr=args.snr,
        templates=args.templates,
        template_voxel_size=args.template_voxel_size,
        shrec_dir=args.shrec_dir,
    )
    print(
        f"Wrote {len(result['tomograms'])} tomograms to {args.out} "
        f"({result['voxel_size']:g} A/voxel); classes in {result['classes']}"
    )


def _read_particle_file(path, shape_zyx=None, voxel_size: float = 1.0, star_convention: str = "relion4"):
    """A particle table from CSV, DeepFinder XML or RELION STAR, chosen by the file extension."""
    from pathlib import Path

    from . import io

    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return io.read_particles_csv(path)
    if suffix == ".xml":
        return io.read_particles_xml(path)
    if suffix == ".star":
        shape_xyz = tuple(shape_zyx[::-1]) if shape_zyx is not None else None
        return io.read_particles_star(path, star_convention, voxel_size, shape_xyz)
    raise ValueError(f"{path}: unknown particle file type; use .csv, .xml or .star")


def _particles_of(table, tomogram, tomo_id=None):
    """Rows of ``table`` for ``tomogram``: those named ``tomo_id`` or the file stem, or all
    rows when the table names a single tomogram."""
    from pathlib import Path

    names = set(table.tomo.tolist())
    wanted = tomo_id or Path(tomogram).stem
    if wanted in names:
        return table.of_tomogram(wanted)
    if tomo_id is None and len(names) <= 1:
        return table
    raise ValueError(
        f"No particle of {tomogram} in the table (tomogram ids {sorted(names)[:5]}...): "
        f"name it with --tomo-id or give one particle file per tomogram"
    )


def _pairs(values: list[str], what: str) -> dict[int, str]:
    pairs = {}
    for value in values:
        class_id, sep, rest = value.partition(":")
        if not sep or not class_id.isdigit():
            raise SystemExit(f"deepfinder: {what} must be CLASS:VALUE (e.g. 1:6), got {value!r}")
        pairs[int(class_id)] = rest
    return pairs


def _add_targets(subparsers) -> None:
    parser = subparsers.add_parser(
        "targets", help="paint a training label map from particle positions (spheres or shapes)"
    )
    parser.add_argument("--tomogram", required=True, help="tomogram (MRC): gives the map's shape")
    parser.add_argument("--particles", required=True, help="particle table (.csv, .xml or .star)")
    parser.add_argument(
        "--tomo-id",
        default=None,
        help="rows of this tomogram id (default: the tomogram's file stem, or every "
        "row if the table holds one tomogram)",
    )
    footprint = parser.add_mutually_exclusive_group(required=True)
    footprint.add_argument(
        "--radius", nargs="+", metavar="CLASS:VOXELS", help="sphere radius in voxels per class, e.g. 1:6 2:8"
    )
    footprint.add_argument(
        "--mask",
        nargs="+",
        metavar="CLASS:MRC",
        help="particle mask or density (MRC, centred at size // 2) per class, "
        "rotated by each particle's orientation",
    )
    parser.add_argument(
        "--mask-threshold",
        type=float,
        default=0.5,
        help="mask voxels are those above this value (0.5 for binary masks; a "
        "density level for a subtomogram average)",
    )
    parser.add_argument(
        "--initial-labels",
        default=None,
        help="label map (MRC) to merge in, e.g. membranes; particles replace it",
    )
    parser.add_argument("--star-convention", default="relion4", choices=["relion4", "relion5"])
    parser.add_argument("--out", required=True, help="output label map (MRC)")
    parser.set_defaults(func=_run_targets)


def _run_targets(args) -> None:
    import numpy as np

    from . import io
    from .targets import mask_from_density, shape_targets, sphere_targets

    shape = io.read_volume(args.tomogram).shape
    voxel_size = io.read_voxel_size(args.tomogram) or 1.0
    table = _read_particle_file(args.particles, shape, voxel_size, args.star_convention)
    particles = _particles_of(table, args.tomogram, args.tomo_id)
    initial = io.read_volume(args.initial_labels) if args.initial_labels else None
    if args.radius:
        radii = {c: float(r) for c, r in _pairs(args.radius, "--radius").items()}
        labels = sphere_targets(shape, particles, radii, initial)
    else:
        masks = {
            c: mask_from_density(io.read_volume(path, mmap=False), args.mask_threshold)
            for c, path in _pairs(args.mask, "--mask").items()
        }
        labels = shape_targets(shape, particles, masks, initial)
    io.write_volume(args.out, labels, voxel_size)
    counts = {int(c): int(n) for c, n in enumerate(np.bincount(labels.ravel())) if c and n}
    print(f"Wrote {args.out}: {len(particles)} particles, voxels per class {counts}")


def _add_train(subparsers) -> None:
    from .train import LOSSES, PRESETS

    parser = subparsers.add_parser(
        "train", help="train the U-net on tomograms, label maps and particle positions"
    )
    parser.add_argument("--tomograms", nargs="+", required=True, help="training tomograms (MRC)")
    parser.add_argument(
        "--labels", nargs="+", required=True, help="one label map per tomogram (see 'deepfinder targets')"
    )
    parser.add_argument(
        "--particles",
        nargs="+",
        required=True,
        help="one particle table per tomogram, or one table whose tomo column "
        "names the tomograms by file stem (.csv, .xml or .star)",
    )
    parser.add_argument("--classes", type=int, required=True, help="number of classes, background included")
    parser.add_argument("--out", required=True, help="output folder (history, checkpoints, best model)")
    parser.add_argument("--val-tomograms", nargs="+", default=[], help="validation tomograms")
    parser.add_argument("--val-labels", nargs="+", default=[], help="their label maps")
    parser.add_argument("--val-particles", nargs="+", default=[], help="their particle tables")
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.0,
        help="without validation tomograms: fraction of particles held out",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="cpu",
        help="defaults for patch size, batch size and steps: "
        + "; ".join(f"{name}: {values}" for name, values in PRESETS.items()),
    )
    parser.add_argument("--patch-size", type=int, help="patch edge in voxels (multiple of 4)")
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--steps-per-epoch", type=int)
    parser.add_argument("--val-steps", type=int, help="validation batches per epoch")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument(
        "--loss",
        choices=LOSSES,
        default="dice_cross_entropy",
        help="as the train protocol: Dice + cross-entropy learns every class early",
    )
    parser.add_argument("--learning-rate", type=float, default=1e-4)
    parser.add_argument(
        "--final-learning-rate",
        type=float,
        default=None,
        help="decay the step size geometrically to this by the last epoch",
    )
    parser.add_argument(
        "--no-bootstrap", action="store_true", help="draw particles by abundance instead of classes uniformly"
    )
    parser.add_argument(
        "--shift", type=int, default=13, help="random shift of patch centres, voxels per axis"
    )
    parser.add_argument("--initial-weights", default=None, help="model (.weights.h5) to fine-tune")
    parser.add_argument(
        "--restart", action="store_true", help="ignore a checkpoint in --out and start afresh"
    )
    parser.add_argument("--class-names", nargs="+", default=None, help="class names, background first")
    parser.add_argument(
        "--voxel-size",
        type=float,
        default=None,
        help="Angstrom per voxel (default: from the first tomogram's header)",
    )
    parser.add_argument("--star-convention", default="relion4", choices=["relion4", "relion5"])
    parser.add_argument("--seed", type=int, default=0)
    _add_precision(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress display")
    parser.set_defaults(func=_run_train)


def _add_precision(parser) -> None:
    from .model import PRECISIONS

    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="network arithmetic; auto: mixed bfloat16 on CPUs that compute it "
        "natively (faster), else float32",
    )


def _tables_for(tomograms, particle_files, star_convention):
    from . import io

    def read(path, tomogram):
        return _read_particle_file(
            path, io.read_volume(tomogram).shape, io.read_voxel_size(tomogram) or 1.0, star_convention
        )

    if len(particle_files) == len(tomograms):
        return [_particles_of(read(p, t), t) for p, t in zip(particle_files, tomograms)]
    if len(particle_files) == 1:
        return [_particles_of(read(particle_files[0], t), t) for t in tomograms]
    raise SystemExit(
        f"deepfinder: give one particle file per tomogram ({len(tomograms)}) or a "
        f"single one, not {len(particle_files)}"
    )


def _run_train(args) -> None:
    from . import io
    from .train import PRESETS, train

    preset = PRESETS[args.preset]
    best = train(
        args.tomograms,
        args.labels,
        _tables_for(args.tomograms, args.particles, args.star_convention),
        args.out,
        args.classes,
        validation_tomograms=args.val_tomograms,
        validation_label_maps=args.val_labels,
        validation_particles=_tables_for(args.val_tomograms, args.val_particles, args.star_convention)
        if args.val_tomograms
        else (),
        validation_fraction=args.val_fraction,
        patch_size=args.patch_size or preset["patch_size"],
        batch_size=args.batch_size or preset["batch_size"],
        epochs=args.epochs,
        steps_per_epoch=args.steps_per_epoch or preset["steps_per_epoch"],
        validation_steps=args.val_steps or preset["validation_steps"],
        loss=args.loss,
        learning_rate=args.learning_rate,
        final_learning_rate=args.final_learning_rate,
        bootstrap=not args.no_bootstrap,
        shift_voxels=args.shift,
        initial_weights=args.initial_weights,
        resume=not args.restart,
        class_names=args.class_names,
        voxel_size=args.voxel_size or io.read_voxel_size(args.tomograms[0]) or 1.0,
        seed=args.seed,
        precision=args.precision,
        progress=not args.quiet,
    )
    print(f"Best model: {best}")


def _write_particle_file(
    path, table, star_convention: str = "relion4", voxel_size: float = 1.0, shape_zyx=None
):
    """Write a particle table as CSV, DeepFinder XML or RELION STAR, chosen by the file extension."""
    from pathlib import Path

    from . import io

    suffix = Path(path).suffix.lower()
    if suffix == ".csv":
        return io.write_particles_csv(path, table)
    if suffix == ".xml":
        return io.write_particles_xml(path, table)
    if suffix == ".star":
        shape_xyz = tuple(shape_zyx[::-1]) if shape_zyx is not None else None
        return io.write_particles_star(path, table, star_convention, voxel_size, shape_xyz)
    raise ValueError(f"{path}: unknown particle file type; use .csv, .xml or .star")


def _add_segment(subparsers) -> None:
    from .segment import DEFAULT_BATCH_SIZE, DEFAULT_CROP_VOXELS, DEFAULT_PATCH_SIZE

    parser = subparsers.add_parser(
        "segment", help="label every voxel of a tomogram with a trained model (label map, score maps)"
    )
    parser.add_argument("--tomogram", required=True, help="tomogram (MRC)")
    parser.add_argument("--model", required=True, help="trained weights (*.weights.h5)")
    parser.add_argument("--labels", required=True, help="output label map (MRC, 1 byte per voxel)")
    parser.add_argument(
        "--scores", default=None, help="also write float16 score maps, one per class: <stem>_class<k>.mrc"
    )
    parser.add_argument(
        "--patch-size",
        type=int,
        default=None,
        help=f"largest tile edge in voxels, a multiple of 4 (memory grows with its cube); "
        f"default {DEFAULT_PATCH_SIZE} or the tomogram's largest edge if smaller",
    )
    parser.add_argument(
        "--crop",
        type=int,
        default=DEFAULT_CROP_VOXELS,
        help="voxels dropped from each inner tile side (32 makes tiling exact)",
    )
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE, help="tiles per forward pass")
    parser.add_argument(
        "--bin",
        action="store_true",
        help="average scores over 2x2x2 voxels before labelling (half-size outputs)",
    )
    parser.add_argument(
        "--average-rotations",
        action="store_true",
        help="average the scores of the tomogram and of its 180-degree rotations about "
        "z, y and x: up to 4x the time, fewer confusions between look-alike classes",
    )
    parser.add_argument(
        "--n-classes",
        type=int,
        default=None,
        help="expected class count, background included (required for bare weights)",
    )
    _add_precision(parser)
    parser.set_defaults(func=_run_segment)


def _run_segment(args) -> None:
    from .segment import segment_tomogram

    result = segment_tomogram(
        args.tomogram,
        args.model,
        args.labels,
        args.scores,
        patch_size=args.patch_size,
        crop_voxels=args.crop,
        batch_size=args.batch_size,
        bin_scores=args.bin,
        average_rotations=args.average_rotations,
        n_classes=args.n_classes,
        precision=args.precision,
    )
    print(
        f"Wrote {result['labels']}"
        + "".join(f", {p}" for p in result["scores"].values())
        + f" in {result['seconds']:.0f} s ({result['voxels_per_second'] / 1e6:.2f} Mvoxel/s, "
        f"{result['n_tiles']} tiles of {result['tile_shape']})"
    )


def _per_class(values: list[str], classes, what: str, kind=float) -> dict[int, float]:
    """``["6"]`` -> the same value for every class; ``["1:6", "2:9"]`` -> per class."""
    if len(values) == 1 and ":" not in values[0]:
        return {int(k): kind(values[0]) for k in classes}
    return {k: kind(v) for k, v in _pairs(values, what).items()}


def _add_cluster(subparsers) -> None:
    parser = subparsers.add_parser("cluster", help="turn a label map into particles (one row per particle)")
    parser.add_argument("--labels", required=True, help="label map (MRC) from segment")
    parser.add_argument(
        "--radius",
        required=True,
        nargs="+",
        metavar="R | CLASS:R",
        help="particle radius in voxels of the label map, one for all classes or per class",
    )
    parser.add_argument(
        "--min-size",
        nargs="+",
        default=None,
        metavar="N | CLASS:N",
        help="drop clusters with fewer voxels (one for all classes or per class)",
    )
    parser.add_argument(
        "--bandwidth",
        nargs="+",
        default=None,
        metavar="B | CLASS:B",
        help="mean-shift bandwidth in voxels (default: the radius)",
    )
    parser.add_argument(
        "--scores", default=None, help="the --scores path given to segment: particle score = mean class score"
    )
    parser.add_argument("--tomo-id", default=None, help="tomogram id in the table (default: file stem)")
    parser.add_argument(
        "--binned",
        action="store_true",
        help="the label map was segmented with --bin: write positions in tomogram voxels",
    )
    parser.add_argument("--output", required=True, help="particle table (.csv, .xml or .star)")
    parser.set_defaults(func=_run_cluster)


def _run_cluster(args) -> None:
    import dataclasses
    from pathlib import Path

    import numpy as np

    from . import io
    from .cluster import find_clusters
    from .segment import score_map_paths, unbin_positions

    labels = io.read_volume(args.labels)
    classes = [int(k) for k in np.unique(labels) if k > 0]
    score_maps = None
    if args.scores:
        paths = score_map_paths(args.scores, max(classes, default=0) + 1)
        missing = [str(p) for k, p in paths.items() if k in classes and not p.exists()]
        if missing:
            raise SystemExit(f"deepfinder: score maps not found: {', '.join(missing)}")
        score_maps = {k: io.read_volume(p) for k, p in paths.items() if k in classes}
    tomo = args.tomo_id or Path(args.labels).stem
    clusters = find_clusters(
        labels,
        _per_class(args.radius, classes, "--radius"),
        _per_class(args.min_size, classes, "--min-size", int) if args.min_size else None,
        score_maps,
        tomo,
        _per_class(args.bandwidth, classes, "--bandwidth") if args.bandwidth else None,
    )
    particles, voxel_size, shape_zyx = (
        clusters.particles,
        io.read_voxel_size(args.labels) or 1.0,
        labels.shape,
    )
    if args.binned:
        particles = dataclasses.replace(particles, xyz=unbin_positions(particles.xyz))
        voxel_size, shape_zyx = voxel_size / 2, tuple(2 * n for n in shape_zyx)
    _write_particle_file(args.output, particles, voxel_size=voxel_size, shape_zyx=shape_zyx)
    counts = np.bincount(clusters.particles.class_id, minlength=max(classes, default=0) + 1)
    print(
        f"Wrote {len(clusters.particles)} particles to {args.output} (per class: "
        + ", ".join(f"{k}: {counts[k]}" for k in classes)
        + ")"
    )


def _add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="precision, recall and F1 of detections against a reference, per class"
    )
    parser.add_argument("--detected", required=True, help="detected particles (.csv, .xml or .star)")
    parser.add_argument("--reference", required=True, help="reference particles (.csv, .xml or .star)")
    rule = parser.add_mutually_exclusive_group(required=True)
    rule.add_argument("--tolerance", type=float, help="distance rule: largest distance in voxels")
    rule.add_argument(
        "--tolerance-angstrom",
        type=float,
        help="distance rule: largest distance in Angstrom (needs --voxel-size)",
    )
    rule.add_argument(
        "--occupancy",
        help="SHREC rule: occupancy map (MRC) of the reference, id i+1 for reference row i (one tomogram)",
    )
    parser.add_argument("--voxel-size", type=float, default=None, help="Angstrom per voxel")
    parser.add_argument("--class-names", nargs="+", default=[], metavar="CLASS:NAME")
    parser.add_argument("--output", default=None, help="write the table as CSV")
    parser.add_argument(
        "--sweep",
        type=int,
        default=0,
        metavar="N",
        help="also sweep N score thresholds (quantiles of the detected scores)",
    )
    parser.add_argument("--sweep-output", default=None, help="CSV of the sweep (with --sweep)")
    parser.set_defaults(func=_run_evaluate)


def _run_evaluate(args) -> None:
    import dataclasses

    import numpy as np

    from . import io
    from .evaluate import (
        confusion_by_distance,
        confusion_by_occupancy,
        format_confusion,
        format_table,
        match_by_distance,
        match_by_occupancy,
        precision_recall_f1,
        threshold_sweep,
        write_scores_csv,
        write_sweep_csv,
    )

    detected = _read_particle_file(args.detected, voxel_size=args.voxel_size or 1.0)
    reference = _read_particle_file(args.reference, voxel_size=args.voxel_size or 1.0)
    if len(set(detected.tomo)) == 1 and len(set(reference.tomo)) == 1:
        # One tomogram each: the same one, whatever the ids (e.g. a label-map file stem).
        detected = dataclasses.replace(detected, tomo=reference.tomo[0])
    names = _pairs(args.class_names, "--class-names")
    rule = {}
    if args.occupancy:
        rule["occupancy_map"] = io.read_volume(args.occupancy)
        result = match_by_occupancy(detected, rule["occupancy_map"], reference)
        confusion = confusion_by_occupancy(detected, rule["occupancy_map"], reference)
    else:
        if args.tolerance_angstrom is not None and not args.voxel_size:
            raise SystemExit("deepfinder: --tolerance-angstrom needs --voxel-size")
        rule["tolerance_voxels"] = (
            args.tolerance if args.tolerance is not None else args.tolerance_angstrom / args.voxel_size
        )
        result = match_by_distance(detected, reference, rule["tolerance_voxels"])
        confusion = confusion_by_distance(detected, reference, rule["tolerance_voxels"])
    rows = precision_recall_f1(result, names)
    print(format_table(rows))
    print("\nDetections by the class of the particle they lie on:")
    print(format_confusion(*confusion, names))
    if args.output:
        write_scores_csv(args.output, rows)
    if args.sweep:
        finite = detected.score[np.isfinite(detected.score)]
        if not len(finite):
            raise SystemExit("deepfinder: --sweep needs detections with scores")
        curves = threshold_sweep(
            detected, reference, np.quantile(finite, np.linspace(0, 1, args.sweep)), class_names=names, **rule
        )
        best = int(np.nanargmax(curves.curve("f1")))
        print(f"Best overall F1 {curves.curve('f1')[best]:.3f} at score >= {curves.thresholds[best]:.4g}")
        if args.sweep_output:
            write_sweep_csv(args.sweep_output, curves)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="deepfinder", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_simulate(subparsers)
    _add_targets(subparsers)
    _add_train(subparsers)
    _add_segment(subparsers)
    _add_cluster(subparsers)
    _add_evaluate(subparsers)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
