"""``deepfinder train``: the U-net trained on tomograms, label maps and particle positions."""

from __future__ import annotations

import argparse

from ..errors import InputError
from ..settings import (
    BINNINGS,
    LOSSES,
    PRECISIONS,
    ROTATIONS,
    TRAINING_PRESETS,
    TrainingSettings,
    training_preset,
)
from .options import add_coordinates_option, add_setting, add_settings_file, command_parser, settings_from


def training_settings(args: argparse.Namespace) -> TrainingSettings:
    """The training settings of a ``train`` command line: its preset or settings file, and options given."""
    if args.preset and args.settings:
        raise InputError("--preset and --settings: give one (the settings file holds every setting)")
    return settings_from(args, training_preset(args.preset or "cpu"))


def add_parser(subparsers) -> None:
    parser = command_parser(
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
    add_settings_file(parser, TrainingSettings)
    parser.setting_options["preset"] = "--preset"
    add_setting(parser, TrainingSettings, "patch_size", "--patch-size", type=int)
    add_setting(parser, TrainingSettings, "batch_size", "--batch-size", type=int)
    add_setting(parser, TrainingSettings, "steps_per_epoch", "--steps-per-epoch", type=int)
    add_setting(parser, TrainingSettings, "validation_steps", "--val-steps", type=int)
    add_setting(parser, TrainingSettings, "epochs", "--epochs", type=int)
    add_setting(parser, TrainingSettings, "loss", "--loss", choices=LOSSES)
    add_setting(parser, TrainingSettings, "learning_rate", "--learning-rate", type=float)
    add_setting(parser, TrainingSettings, "final_learning_rate", "--final-learning-rate", type=float)
    add_setting(parser, TrainingSettings, "bootstrap", "--no-bootstrap", action="store_false")
    add_setting(parser, TrainingSettings, "shift_voxels", "--shift", type=int)
    add_setting(parser, TrainingSettings, "rotations", "--rotations", choices=ROTATIONS)
    add_setting(parser, TrainingSettings, "added_noise", "--added-noise", type=float)
    add_setting(parser, TrainingSettings, "binning", "--binning", type=int, choices=BINNINGS)
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
    add_coordinates_option(parser)
    add_setting(parser, TrainingSettings, "seed", "--seed", type=int)
    add_setting(parser, TrainingSettings, "precision", "--precision", choices=PRECISIONS)
    parser.set_defaults(func=run)


def particles_per_tomogram(tomograms: list[str], particle_files: list[str], args) -> list:
    """The particles of each tomogram: from its own table, or all from a single table."""
    from .. import tables

    if len(particle_files) == 1:
        particle_files = particle_files * len(tomograms)
    if len(particle_files) != len(tomograms):
        raise InputError(
            f"give one particle file per tomogram ({len(tomograms)}) or a single one, "
            f"not {len(particle_files)}"
        )
    return [
        tables.particles_of_tomogram(path, tomogram, coordinates_voxel_size=args.coordinates_voxel_size)
        for path, tomogram in zip(particle_files, tomograms)
    ]


def run(args) -> None:
    from .. import io
    from ..train import train

    settings = training_settings(args)
    settings.check()
    best = train(
        args.tomograms,
        args.labels,
        particles_per_tomogram(args.tomograms, args.particles, args),
        args.out,
        args.classes,
        settings,
        validation_tomograms=args.val_tomograms,
        validation_label_maps=args.val_labels,
        validation_particles=particles_per_tomogram(args.val_tomograms, args.val_particles, args)
        if args.val_tomograms
        else (),
        validation_fraction=args.val_fraction,
        initial_weights=args.initial_weights,
        resume=not args.restart,
        class_names=args.class_names,
        voxel_size=args.voxel_size or io.read_voxel_size(args.tomograms[0]) or 1.0,
    )
    print(f"Best model: {best}")
