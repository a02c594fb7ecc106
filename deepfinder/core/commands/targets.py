"""``deepfinder targets``: a training label map painted from particle positions."""

from __future__ import annotations

import argparse

from ..settings import TargetSettings, per_class
from .options import add_coordinates_option, add_setting, add_settings_file, command_parser, settings_from


def target_settings(args: argparse.Namespace) -> TargetSettings:
    """The target settings of a ``targets`` command line."""
    return settings_from(args, TargetSettings())


def add_parser(subparsers) -> None:
    parser = command_parser(
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
    add_setting(parser, TargetSettings, "mask_threshold", "--mask-threshold", type=float)
    add_settings_file(parser, TargetSettings)
    parser.add_argument(
        "--initial-labels",
        default=None,
        help="label map (MRC) to merge in, e.g. membranes; particles replace it",
    )
    add_coordinates_option(parser)
    parser.add_argument("--out", required=True, help="output label map (MRC)")
    parser.setting_options["radius"] = "--radius"
    parser.set_defaults(func=run)


def run(args) -> None:
    import numpy as np

    from .. import io, tables
    from ..steps.targets import make_targets_files

    settings = target_settings(args)
    settings.check()
    masks = per_class(args.mask, [], "--mask", str) if args.mask else {}
    io.refuse_overwriting_inputs(
        [args.out], [args.tomogram, args.particles, args.initial_labels, *masks.values()]
    )
    particles = tables.particles_of_tomogram(
        args.particles,
        args.tomogram,
        coordinates_voxel_size=args.coordinates_voxel_size,
        tomo_id=args.tomo_id,
    )
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
