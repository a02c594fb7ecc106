"""The ``deepfinder`` command line: argument parsing, each subcommand builds its settings and calls its step.

Options of a setting take their help and default from the stage's settings
(:mod:`deepfinder.core.settings`); ``--settings FILE`` gives them all at once (an option given
replaces the file's value). The steps are in :mod:`deepfinder.core.steps` or the engine module of
the stage. The engine's progress is printed as it logs it (``--quiet``: warnings only,
``--verbose``: details).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import socket
import sys
import time
import warnings
from datetime import datetime
from functools import partial
from importlib.metadata import version

from .errors import InputError, about_file
from .settings import (
    LOSSES,
    PRECISIONS,
    TRAINING_PRESETS,
    ClusterSettings,
    SegmentationSettings,
    SettingError,
    TargetSettings,
    TrainingSettings,
    default_of,
    help_of,
    per_class,
    read_settings,
    training_preset,
)

_log = logging.getLogger("deepfinder.cli")


def _command(subparsers, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand's parser, with the options every subcommand has."""
    parser = subparsers.add_parser(name, help=help)
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("--quiet", action="store_true", help="print warnings and results only")
    verbosity.add_argument("--verbose", action="store_true", help="also print the engine's details")
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of an error and TensorFlow's own messages"
    )
    parser.add_argument(
        "--gpus",
        nargs="+",
        type=_gpu_id,
        default=None,
        metavar="ID",
        help="the GPUs this run may use (CUDA_VISIBLE_DEVICES), e.g. 0 or 0 1, or 'none' for the CPU only; "
        "several GPUs train in parallel (default: those the environment shows)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="CPU threads of the computation, e.g. the cores a queue gave this job "
        "(default: one per core of the machine)",
    )
    parser.add_argument(
        "--error-file",
        default=None,
        metavar="PATH",
        help="on failure, also write the one-line error message to this file (for a caller that "
        "does not see this command's output, e.g. a batch job's); not a file given to the command, "
        "its folder is created if needed",
    )
    parser.set_defaults(command_parser=parser)
    # The option of each setting, to name it in a refusal (SettingError names the setting).
    parser.setting_options = {}
    return parser


def _add_setting(parser, settings_class: type, name: str, *flags: str, **options) -> None:
    """An option for the setting ``name`` of ``settings_class``, with the setting's help.

    The option's value is None unless given, so that :func:`settings_from` can tell
    given values from defaults (which a preset may change).
    """
    default = default_of(settings_class, name)
    shown = "" if isinstance(default, bool) else f" (default: {default})"
    turns_off = "Turn off: " if options.get("action") == "store_false" else ""
    parser.add_argument(
        *flags, dest=name, default=None, help=turns_off + help_of(settings_class, name) + shown, **options
    )
    parser.setting_options[name] = "/".join(flags)


def _add_settings_file(parser, settings_class: type) -> None:
    """The ``--settings`` option: a JSON file of ``settings_class`` (:func:`write_settings`)."""
    parser.add_argument(
        "--settings",
        default=None,
        metavar="JSON",
        help=f"the {settings_class.__name__} of this run, as written by the Scipion protocol: an option "
        "given on the command line replaces the file's value",
    )


def _gpu_id(text: str) -> str:
    if text != "none" and not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r} is not a GPU number (0, 1, ...) or 'none'")
    return text


def settings_from(args: argparse.Namespace, base):
    """The settings of the ``--settings`` file (else ``base``, a settings object), with the options given."""
    if args.settings:
        base = read_settings(args.settings, type(base))
    given = {
        f.name: getattr(args, f.name)
        for f in dataclasses.fields(base)
        if getattr(args, f.name, None) is not None
    }
    return dataclasses.replace(base, **given)


def training_settings(args: argparse.Namespace) -> TrainingSettings:
    """The training settings of a ``train`` command line: its preset or settings file, and options given."""
    if args.preset and args.settings:
        raise InputError("--preset and --settings: give one (the settings file holds every setting)")
    return settings_from(args, training_preset(args.preset or "cpu"))


def segmentation_settings(args: argparse.Namespace) -> SegmentationSettings:
    """The segmentation settings of a ``segment`` command line."""
    return settings_from(args, SegmentationSettings())


def target_settings(args: argparse.Namespace) -> TargetSettings:
    """The target settings of a ``targets`` command line."""
    return settings_from(args, TargetSettings())


def _add_simulate(subparsers) -> None:
    from .simulate import PRESETS, SHREC19_DIR_VARIABLE

    parser = _command(
        subparsers,
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
    parser.add_argument(
        "--tomograms",
        dest="n_tomograms",
        type=int,
        default=None,
        metavar="N",
        help="number of tomograms (preset default)",
    )
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
        help="bench presets: the folder holding shrec19/ and templates_10A/ "
        f"(default: ${SHREC19_DIR_VARIABLE})",
    )
    parser.setting_options.update(
        n_tomograms="--tomograms", snr="--snr", template_voxel_size="--template-voxel-size"
    )
    parser.set_defaults(func=_run_simulate)


def _run_simulate(args) -> None:
    from .simulate import simulate_dataset

    result = simulate_dataset(
        args.out,
        preset=args.preset,
        n_tomograms=args.n_tomograms,
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


def _read_table_for(path, tomogram, args, tomo_id=None):
    """The particles of ``tomogram`` in the table ``path``, in the tomogram's voxels: the rows named
    ``tomo_id`` or the tomogram's file stem, or all rows when the table names a single tomogram;
    refused when none."""
    from pathlib import Path

    from . import io, tables

    shape_xyz = io.read_volume(tomogram).shape[::-1]
    voxel_size = io.read_voxel_size(tomogram)
    read = tables.read_table(
        path,
        tomograms=tables.SameForAll(tables.TomogramGeometry(shape_xyz, voxel_size or 1.0)),
        coordinates_voxel_size=args.coordinates_voxel_size,
        voxel_size=voxel_size or None,
        volume_shape_xyz=shape_xyz,
    )
    if read.voxel_size is not None and not voxel_size:
        raise InputError(
            f"{tomogram}: no voxel size in the MRC header, needed to place the positions of {path} "
            f"({read.voxel_size:g} A per pixel)"
        )
    table = read.particles
    names = set(table.tomo.tolist())
    wanted = tomo_id or Path(tomogram).stem
    if wanted in names:
        return table.of_tomogram(wanted)
    if not len(table):
        raise InputError(f"{path}: no particle in the table")
    if tomo_id is None and len(names) <= 1:
        return table
    raise InputError(
        f"{path}: no particle of {tomogram} (tomogram ids {sorted(names)[:5]}): "
        f"name it with --tomo-id or give one particle file per tomogram"
    )


def _add_coordinates_options(parser) -> None:
    parser.add_argument(
        "--coordinates-voxel-size",
        type=float,
        default=None,
        metavar="ANGSTROM",
        help="Angstrom per pixel of the positions in particle tables that do not state it: CSV and XML "
        "(default: the tomogram's voxels) and STAR files without a pixel size (no default); they are "
        "rescaled to the tomogram's voxels. RELION 5 tables are placed with the tomogram's size",
    )


def _add_targets(subparsers) -> None:
    parser = _command(
        subparsers, "targets", help="paint a training label map from particle positions (spheres or shapes)"
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
        "--radius",
        nargs="+",
        metavar="R | CLASS:R",
        help="sphere radius in voxels, one for all classes or per class, e.g. 1:6 2:8",
    )
    footprint.add_argument(
        "--mask",
        nargs="+",
        metavar="CLASS:MRC",
        help="particle mask or density (MRC, centred at size // 2) per class, "
        "rotated by each particle's orientation",
    )
    _add_setting(parser, TargetSettings, "mask_threshold", "--mask-threshold", type=float)
    _add_settings_file(parser, TargetSettings)
    parser.add_argument(
        "--initial-labels",
        default=None,
        help="label map (MRC) to merge in, e.g. membranes; particles replace it",
    )
    _add_coordinates_options(parser)
    parser.add_argument("--out", required=True, help="output label map (MRC)")
    parser.setting_options["radius"] = "--radius"
    parser.set_defaults(func=_run_targets)


def _run_targets(args) -> None:
    import numpy as np

    from . import io
    from .steps.targets import make_targets_files

    settings = target_settings(args)
    settings.check()
    masks = per_class(args.mask, [], "--mask", str) if args.mask else {}
    io.refuse_overwriting_inputs(
        [args.out], [args.tomogram, args.particles, args.initial_labels, *masks.values()]
    )
    particles = _read_table_for(args.particles, args.tomogram, args, args.tomo_id)
    labels = make_targets_files(
        args.tomogram,
        particles,
        args.particles,
        args.out,
        settings,
        radius=args.radius,
        mask_paths=masks,
        initial_labels_path=args.initial_labels,
    )
    counts = {int(c): int(n) for c, n in enumerate(np.bincount(labels.ravel())) if c and n}
    print(f"Wrote {args.out}: {len(particles)} particles, voxels per class {counts}")


def _add_train(subparsers) -> None:
    parser = _command(
        subparsers, "train", help="train the U-net on tomograms, label maps and particle positions"
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
        "names the tomograms by file stem (.csv, .xml or .star); rows of class 0 are background "
        "points (e.g. rejected picks), where patches are centred too",
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
        choices=sorted(TRAINING_PRESETS),
        default=None,
        help="training settings that fit the hardware or a first try, changed by the options given "
        "(default: cpu; not with --settings): "
        + "; ".join(f"{name}: {changes or 'the defaults'}" for name, changes in TRAINING_PRESETS.items()),
    )
    _add_settings_file(parser, TrainingSettings)
    parser.setting_options["preset"] = "--preset"
    _add_setting(parser, TrainingSettings, "patch_size", "--patch-size", type=int)
    _add_setting(parser, TrainingSettings, "batch_size", "--batch-size", type=int)
    _add_setting(parser, TrainingSettings, "steps_per_epoch", "--steps-per-epoch", type=int)
    _add_setting(parser, TrainingSettings, "validation_steps", "--val-steps", type=int)
    _add_setting(parser, TrainingSettings, "epochs", "--epochs", type=int)
    _add_setting(parser, TrainingSettings, "loss", "--loss", choices=LOSSES)
    _add_setting(parser, TrainingSettings, "learning_rate", "--learning-rate", type=float)
    _add_setting(parser, TrainingSettings, "final_learning_rate", "--final-learning-rate", type=float)
    _add_setting(parser, TrainingSettings, "bootstrap", "--no-bootstrap", action="store_false")
    _add_setting(parser, TrainingSettings, "shift_voxels", "--shift", type=int)
    parser.add_argument("--initial-weights", default=None, help="model (.weights.h5) to fine-tune")
    parser.add_argument(
        "--restart",
        action="store_true",
        help="start afresh: remove the training in --out (checkpoints, history, best model); without "
        "it, a training in --out of the same data and settings is continued",
    )
    parser.add_argument("--class-names", nargs="+", default=None, help="class names, background first")
    parser.add_argument(
        "--voxel-size",
        type=float,
        default=None,
        help="Angstrom per voxel (default: from the first tomogram's header)",
    )
    _add_coordinates_options(parser)
    _add_setting(parser, TrainingSettings, "seed", "--seed", type=int)
    _add_setting(parser, TrainingSettings, "precision", "--precision", choices=PRECISIONS)
    parser.set_defaults(func=_run_train)


def _tables_for(tomograms, particle_files, args):
    if len(particle_files) == len(tomograms):
        return [_read_table_for(p, t, args) for p, t in zip(particle_files, tomograms)]
    if len(particle_files) == 1:
        return [_read_table_for(particle_files[0], t, args) for t in tomograms]
    raise InputError(
        f"give one particle file per tomogram ({len(tomograms)}) or a single one, not {len(particle_files)}"
    )


def _run_train(args) -> None:

    from . import io
    from .train import train

    settings = training_settings(args)
    settings.check()
    best = train(
        args.tomograms,
        args.labels,
        _tables_for(args.tomograms, args.particles, args),
        args.out,
        args.classes,
        settings,
        validation_tomograms=args.val_tomograms,
        validation_label_maps=args.val_labels,
        validation_particles=_tables_for(args.val_tomograms, args.val_particles, args)
        if args.val_tomograms
        else (),
        validation_fraction=args.val_fraction,
        initial_weights=args.initial_weights,
        resume=not args.restart,
        class_names=args.class_names,
        voxel_size=args.voxel_size or io.read_voxel_size(args.tomograms[0]) or 1.0,
    )
    print(f"Best model: {best}")


def _add_segment(subparsers) -> None:
    parser = _command(
        subparsers,
        "segment",
        help="label every voxel of a tomogram with a trained model (label map, score maps)",
    )
    parser.add_argument("--tomogram", required=True, help="tomogram (MRC)")
    parser.add_argument("--model", required=True, help="trained weights (*.weights.h5)")
    parser.add_argument("--labels", required=True, help="output label map (MRC, 1 byte per voxel)")
    parser.add_argument(
        "--scores", default=None, help="also write float16 score maps, one per class: <stem>_class<k>.mrc"
    )
    _add_settings_file(parser, SegmentationSettings)
    _add_setting(parser, SegmentationSettings, "patch_size", "--patch-size", type=int)
    _add_setting(parser, SegmentationSettings, "crop_voxels", "--crop", type=int)
    _add_setting(parser, SegmentationSettings, "batch_size", "--batch-size", type=int)
    _add_setting(parser, SegmentationSettings, "bin_scores", "--bin", action="store_true")
    _add_setting(
        parser, SegmentationSettings, "average_rotations", "--average-rotations", action="store_true"
    )
    parser.add_argument(
        "--n-classes",
        type=int,
        default=None,
        help="expected class count, background included (required for bare weights)",
    )
    _add_setting(parser, SegmentationSettings, "precision", "--precision", choices=PRECISIONS)
    _add_mask_option(parser, "segment only inside it: background elsewhere, and tiles outside it are skipped")
    parser.set_defaults(func=_run_segment)


def _add_mask_option(parser, what: str) -> None:
    parser.add_argument(
        "--mask",
        default=None,
        metavar="MRC",
        help=f"region of interest (MRC, nonzero = search here): {what}; a mask at another sampling "
        "(voxel size in its header or --mask-voxel-size, or binned by a whole factor) is resampled "
        "to the volume's grid",
    )
    parser.add_argument(
        "--mask-voxel-size",
        type=float,
        default=None,
        metavar="ANGSTROM",
        help="Angstrom per voxel of the --mask, if not its header's",
    )


def _run_segment(args) -> None:
    from . import io
    from .roi import read_mask_for
    from .segment import MAX_LABEL_CLASSES, score_map_paths, segment_tomogram

    settings = segmentation_settings(args)
    settings.check()
    if args.mask:
        outputs = [
            args.labels,
            *(score_map_paths(args.scores, MAX_LABEL_CLASSES).values() if args.scores else ()),
        ]
        io.refuse_overwriting_inputs(outputs, [args.mask])
    mask = None
    if args.mask:
        mask = read_mask_for(
            args.mask, args.tomogram, io.read_volume(args.tomogram).shape, args.mask_voxel_size
        )
    result = segment_tomogram(
        args.tomogram, args.model, args.labels, args.scores, settings, n_classes=args.n_classes, mask=mask
    )
    skipped = f", {result['n_tiles_skipped']} outside the mask skipped" if args.mask else ""
    print(
        f"Wrote {result['labels']}"
        + "".join(f", {p}" for p in result["scores"].values())
        + f" in {result['seconds']:.0f} s ({result['voxels_per_second'] / 1e6:.2f} Mvoxel/s, "
        f"{result['n_tiles']} tiles of {result['tile_shape']}{skipped})"
    )


def _add_cluster(subparsers) -> None:
    parser = _command(subparsers, "cluster", help="turn a label map into particles (one row per particle)")
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
        help="drop clusters with fewer voxels (one for all classes or per class); default: "
        + help_of(ClusterSettings, "min_size_fraction")[0].lower()
        + help_of(ClusterSettings, "min_size_fraction")[1:],
    )
    parser.add_argument(
        "--bandwidth",
        nargs="+",
        default=None,
        metavar="B | CLASS:B",
        help="mean-shift bandwidth in voxels (default: the radius)",
    )
    scores = parser.add_mutually_exclusive_group()
    scores.add_argument(
        "--scores", default=None, help="the --scores path given to segment: particle score = mean class score"
    )
    scores.add_argument(
        "--score-maps",
        nargs="+",
        default=None,
        metavar="CLASS:MRC",
        help="score map (MRC, the label map's shape) per class, in place of --scores",
    )
    parser.add_argument("--tomo-id", default=None, help="tomogram id in the table (default: file stem)")
    scale = parser.add_mutually_exclusive_group()
    scale.add_argument(
        "--binned",
        action="store_true",
        help="the label map was segmented with --bin: write positions in tomogram voxels",
    )
    scale.add_argument(
        "--label-scale",
        type=float,
        default=None,
        metavar="S",
        help="tomogram voxels per label-map voxel (2 is --binned): write positions in tomogram voxels",
    )
    parser.add_argument(
        "--sizes", default=None, help="also write each particle's cluster size (voxels), one per line"
    )
    parser.add_argument(
        "--output",
        required=True,
        help="particle table, in the format of its extension (.csv, .xml, .star: RELION 5, .tbl: Dynamo "
        "with its .doc table map, .mod: IMOD) or --output-format",
    )
    _add_output_format(parser, "--output-format")
    cut = parser.add_mutually_exclusive_group()
    cut.add_argument(
        "--threshold",
        nargs="+",
        default=None,
        metavar="T | CLASS:T | auto",
        help="drop picks scoring below a threshold (kept picks keep their scores): one for all "
        "classes, one per class (CLASS:T), or 'auto': per class, split this tomogram's scores in two "
        "populations (Otsu's cut; cluster sizes on a log scale) when two Gaussians describe them "
        "better than one",
    )
    cut.add_argument(
        "--thresholds-from",
        default=None,
        metavar="JSON",
        help="per-class thresholds written by 'deepfinder evaluate --sweep N --thresholds-output'",
    )
    parser.add_argument(
        "--threshold-report",
        default=None,
        metavar="JSON",
        help="with a threshold: write every pick's score before the cut, the thresholds, the fits "
        "and the picks each class lost (the data of the score histogram picture)",
    )
    _add_mask_option(parser, "only particles whose centre lies in it are kept")
    _add_settings_file(parser, ClusterSettings)
    parser.setting_options.update(
        radius="--radius", min_size="--min-size", bandwidth="--bandwidth", threshold="--threshold"
    )
    parser.set_defaults(func=_run_cluster)


def _run_cluster(args) -> None:
    import numpy as np

    from . import io
    from .segment import MAX_LABEL_CLASSES, score_map_paths
    from .steps.cluster import cluster_files

    given_maps = per_class(args.score_maps, [], "--score-maps", str) if args.score_maps else {}
    io.refuse_overwriting_inputs(
        [args.output, args.sizes, args.threshold_report],
        [
            args.labels,
            args.thresholds_from,
            args.mask,
            *given_maps.values(),
            *(score_map_paths(args.scores, MAX_LABEL_CLASSES).values() if args.scores else ()),
        ],
    )
    result = cluster_files(
        args.labels,
        args.output,
        args.radius,
        settings_from(args, ClusterSettings()),
        min_size=args.min_size,
        bandwidth=args.bandwidth,
        scores_path=args.scores,
        score_maps=given_maps,
        tomo_id=args.tomo_id,
        label_scale=2.0 if args.binned else args.label_scale or 1.0,
        mask_path=args.mask,
        mask_voxel_size=args.mask_voxel_size,
        threshold=args.threshold,
        thresholds_path=args.thresholds_from,
        threshold_report_path=args.threshold_report,
        sizes_path=args.sizes,
        output_format=args.output_format,
    )
    classes, lost = result.classes, result.lost
    counts = np.bincount(result.particles.class_id, minlength=max(classes, default=0) + 1)
    print(
        f"Wrote {len(result.particles)} particles to {args.output} (per class: "
        + ", ".join(f"{k}: {counts[k]}" for k in classes)
        + ")"
        + (
            "; below the score threshold, lost per class: "
            + ", ".join(f"{k}: {lost.get(k, 0)}" for k in classes)
            if lost is not None
            else ""
        )
    )


def _add_evaluate(subparsers) -> None:
    parser = _command(
        subparsers, "evaluate", help="precision, recall and F1 of detections against a reference, per class"
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
    parser.add_argument(
        "--voxel-size",
        type=float,
        default=None,
        help="Angstrom per voxel of the comparison: tables stating their pixel size are rescaled to it",
    )
    _add_tomograms_option(parser)
    parser.add_argument(
        "--class-names",
        nargs="+",
        default=[],
        metavar="CLASS:NAME",
        help="names of the classes in the tables printed and written, e.g. 1:ribosome 2:proteasome "
        "(default: class 1, class 2, ...)",
    )
    parser.add_argument("--output", default=None, help="write the table as CSV")
    parser.add_argument(
        "--sweep",
        type=int,
        default=0,
        metavar="N",
        help="also sweep N score thresholds (quantiles of the detected scores)",
    )
    parser.add_argument("--sweep-output", default=None, help="CSV of the sweep (with --sweep)")
    parser.add_argument(
        "--thresholds-output",
        default=None,
        metavar="JSON",
        help="with --sweep: write the threshold of best F1 of each class, for 'deepfinder cluster "
        "--thresholds-from'",
    )
    parser.setting_options.update(tolerance_voxels="--tolerance/--tolerance-angstrom", sweep="--sweep")
    parser.set_defaults(func=_run_evaluate)


def _add_output_format(parser, flag: str) -> None:
    from .tables import FORMATS

    parser.add_argument(
        flag,
        default=None,
        choices=list(FORMATS),
        help="format of the output table (default: by its extension; .star is RELION 5)",
    )


def _add_tomograms_option(parser) -> None:
    parser.add_argument(
        "--tomograms",
        default=None,
        metavar="STAR | X,Y,Z",
        help="size of the tomograms, for RELION 5 tables (positions from the tomogram centre): a RELION 5 "
        "tomograms.star, or one size X,Y,Z in voxels of --voxel-size for every tomogram",
    )


def _add_convert(subparsers) -> None:
    from .tables import FORMATS, OPTIONS

    parser = _command(
        subparsers,
        "convert",
        help="convert a particle table between formats (CSV, XML, RELION 5, RELION 4/3.1, Warp, WarpTools, "
        "Dynamo, STOPGAP, IMOD, copick)",
    )
    parser.add_argument(
        "input",
        help="particle table to read (format by extension: .csv .xml .star .tbl .mod, a copick "
        "copick_config.json or its folder; .star is STOPGAP or RELION by content; or --from)",
    )
    parser.add_argument("output", help="particle table to write (format by extension, or --to)")
    parser.add_argument(
        "--from", dest="from_format", default=None, choices=list(FORMATS), help="format of the input"
    )
    _add_output_format(parser, "--to")
    _add_tomograms_option(parser)
    parser.add_argument(
        "--voxel-size",
        type=float,
        default=None,
        metavar="ANGSTROM",
        help="Angstrom per voxel of the written positions (the pixel size RELION 4, Dynamo, IMOD state; "
        "RELION 5 and copick write Angstrom from it) and of CSV/XML input (default: the input's pixel "
        "size, else the tomograms')",
    )
    parser.add_argument(
        "--coordinates-voxel-size",
        type=float,
        default=None,
        metavar="ANGSTROM",
        help="Angstrom per pixel of the input's positions where the file does not state it "
        "(a STAR file without optics or pixel size, Dynamo, STOPGAP, an IMOD model in pixels)",
    )
    for name, option in OPTIONS.items():
        flag = "--" + name.replace("_", "-")
        if option.switch:
            parser.add_argument(flag, action="store_true", help=option.help)
        else:
            parser.add_argument(flag, default=None, help=option.help)
    parser.set_defaults(func=_run_convert)


def _run_convert(args) -> None:
    from . import tables

    tomograms = tables.tomograms_from(args.tomograms, args.voxel_size) if args.tomograms else None
    written, rows = tables.convert_table(
        args.input,
        args.output,
        args.from_format,
        args.to,
        tomograms=tomograms,
        coordinates_voxel_size=args.coordinates_voxel_size,
        voxel_size=args.voxel_size,
        **{name: getattr(args, name) for name in tables.OPTIONS},
    )
    print(f"Wrote {rows} particles to {written}")


def _run_evaluate(args) -> None:
    import numpy as np

    from . import io, tables
    from .evaluate import format_table
    from .settings import EvaluationSettings
    from .steps.evaluate import evaluate_files, write_evaluation

    if (args.sweep_output or args.thresholds_output) and not args.sweep:
        raise InputError("--sweep-output and --thresholds-output need --sweep N")
    if args.tolerance_angstrom is not None and not args.voxel_size:
        raise InputError("--tolerance-angstrom needs --voxel-size")
    io.refuse_overwriting_inputs(
        [args.output, args.sweep_output, args.thresholds_output],
        [args.detected, args.reference, args.occupancy],
    )
    tolerance = args.tolerance_angstrom / args.voxel_size if args.tolerance_angstrom is not None else None
    settings = EvaluationSettings(
        tolerance_voxels=args.tolerance if args.tolerance is not None else tolerance, sweep=args.sweep
    )
    names = per_class(args.class_names, [], "--class-names", str)
    evaluation = evaluate_files(
        args.detected,
        args.reference,
        settings,
        occupancy_path=args.occupancy,
        voxel_size=args.voxel_size,
        tomograms=tables.tomograms_from(args.tomograms, args.voxel_size) if args.tomograms else None,
        class_names=names,
    )
    print(format_table(evaluation.rows))
    print("\nDetections by the class of the particle they lie on:")
    print(evaluation.confusion)
    write_evaluation(
        evaluation,
        scores_csv=args.output,
        sweep_csv=args.sweep_output,
        thresholds_json=args.thresholds_output,
        class_names=names,
        source=f"best F1 of {args.detected} against {args.reference}",
    )
    if evaluation.curves is None:
        return
    f1 = evaluation.curves.curve("f1")
    best = int(np.nanargmax(f1))
    print(f"Best overall F1 {f1[best]:.3f} at score >= {evaluation.curves.thresholds[best]:.4g}")
    if args.thresholds_output:
        for k, (threshold, class_f1) in evaluation.best.items():
            cut = f"score >= {threshold:.4g}" if np.isfinite(threshold) else "every pick (no cut)"
            print(f"{names.get(k, f'class {k}')}: best F1 {class_f1:.3f} with {cut}")


def build_parser() -> argparse.ArgumentParser:
    """The ``deepfinder`` parser with its subcommands."""
    parser = argparse.ArgumentParser(prog="deepfinder", description=__doc__)
    # The installed distribution's version: the engine imports nothing outside deepfinder.core.
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('scipion-em-deepfinder')}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_simulate(subparsers)
    _add_targets(subparsers)
    _add_train(subparsers)
    _add_segment(subparsers)
    _add_cluster(subparsers)
    _add_evaluate(subparsers)
    _add_convert(subparsers)
    return parser


def main(argv=None) -> None:
    """Run a ``deepfinder`` command line and exit with its status.

    A refused input or setting prints one line and exits with code 2, any other
    failure one line and code 1 (``--debug``: the traceback instead), an interrupt
    code 130. Warnings are one line each.
    """
    from .logs import engine_log

    args = build_parser().parse_args(argv)
    if not args.debug:
        # Level 3 also hides TensorFlow's native start-up lines (deepfinder.core.devices.import_keras),
        # whatever level the calling environment (e.g. Scipion's) set.
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    if args.gpus is not None:
        # Before TensorFlow is imported: it reads the variable once.
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(gpu for gpu in args.gpus if gpu != "none")
    if args.threads is not None:
        if args.threads < 1:
            args.command_parser.error(f"--threads: {args.threads} is not a number of threads (1, 2, ...)")
        # Read by TensorFlow and its oneDNN kernels when they load.
        for variable in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "OMP_NUM_THREADS"):
            os.environ[variable] = str(args.threads)
    prog = args.command_parser.prog
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    # A terminated run (a batch system's time limit) unwinds like an interrupted one, so that
    # its temporary output files are removed and the previous outputs stay.
    previous_handler = signal.signal(signal.SIGTERM, _exit_when_terminated)
    with engine_log(level), warnings.catch_warnings():
        if not args.debug:
            warnings.showwarning = partial(_show_warning, prog)
        started = time.time()
        # Where and when each engine process ran: the run log of a protocol step sent to a
        # GPU or a queue node says which one it got.
        _log.info(
            "%s: started %s, pid %d on %s, CUDA_VISIBLE_DEVICES=%s",
            prog,
            _clock(started),
            os.getpid(),
            socket.gethostname(),
            os.environ.get("CUDA_VISIBLE_DEVICES", "(not set)"),
        )
        # Set once checked: a refused --error-file is not written.
        error_file = None
        try:
            _check_error_file(args)
            error_file = args.error_file
            args.func(args)
            _log.info("%s: finished %s after %.1f s", prog, _clock(time.time()), time.time() - started)
        except SettingError as error:
            if args.debug:
                raise
            message = f"{_option_of(args.command_parser, error.setting)}: {error.problem}"
            _write_error_file(error_file, f"{prog}: error: {message}", prog)
            args.command_parser.error(message)
        except KeyboardInterrupt:
            print(f"{prog}: interrupted", file=sys.stderr)
            _write_error_file(error_file, f"{prog}: interrupted", prog)
            sys.exit(130)
        except Exception as error:
            if args.debug:
                raise
            user_error = isinstance(error, InputError | _PATH_ERRORS)
            hint = "" if user_error else " (run with --debug for the traceback)"
            line = f"{prog}: error: {_message_of(error)}{hint}"
            print(line, file=sys.stderr)
            _write_error_file(error_file, line, prog)
            sys.exit(2 if user_error else 1)
        finally:
            signal.signal(signal.SIGTERM, previous_handler)


def _check_error_file(args: argparse.Namespace) -> None:
    """Refuse an ``--error-file`` that is a folder or names a file given on the command line (an
    input, or an output): the error text would replace it."""
    from . import io

    path = args.error_file
    if path is None:
        return
    if os.path.isdir(path):
        raise InputError(f"--error-file {path} is a folder: give the path of a file")
    given = [value for name, value in vars(args).items() if name != "error_file"]
    with about_file("--error-file"):
        io.refuse_overwriting_inputs([path], _paths_in(given))


def _paths_in(values: list) -> list[str]:
    """The strings among ``values`` (and in the lists among them) that may name files, as given or,
    for a per-class value ``CLASS:PATH``, after the class."""
    paths = []
    for value in values:
        if isinstance(value, list):
            paths += _paths_in(value)
        elif isinstance(value, str):
            paths += [value, value.partition(":")[2]]
    return paths


def _write_error_file(path: str | None, message: str, prog: str) -> None:
    """Write ``message`` to the ``--error-file`` ``path`` (nothing when None), in a new folder if
    needed; a failure to write it is reported, not raised, so the command's own error stays."""
    from . import io

    if not path:
        return
    try:
        with io.atomic_output(path) as temporary:
            temporary.write_text(message + "\n", encoding="utf-8")
    except OSError as error:
        print(f"{prog}: warning: the error file was not written: {_message_of(error)}", file=sys.stderr)


def _clock(seconds: float) -> str:
    return datetime.fromtimestamp(seconds).isoformat(timespec="milliseconds")


def _exit_when_terminated(signal_number, frame) -> None:
    raise SystemExit(128 + signal_number)


# A path the user gave that cannot be read or written as asked.
_PATH_ERRORS = FileNotFoundError | PermissionError | IsADirectoryError | NotADirectoryError | FileExistsError


def _message_of(error: Exception) -> str:
    """One line saying what went wrong: the engine's message, or the file and problem of an OSError."""
    if isinstance(error, OSError) and error.filename and error.strerror:
        return f"{error.filename}: {error.strerror}"
    if isinstance(error, InputError | OSError):
        message = str(error)
    else:
        message = f"{type(error).__name__}: {error}"
    return " ".join(message.split())


def _show_warning(prog, message, category, filename, lineno, file=None, line=None) -> None:
    print(f"{prog}: warning: {message}", file=sys.stderr)


def _option_of(parser: argparse.ArgumentParser, setting: str) -> str:
    """The command-line option of a setting (the setting's name if it has none)."""
    return parser.setting_options.get(setting, setting)


if __name__ == "__main__":
    main()
