"""``deepfinder convert``: a particle table from one format to another."""

from __future__ import annotations

from .options import add_output_format, add_tomograms_option, command_parser


def add_parser(subparsers) -> None:
    from ..tables import FORMATS, OPTIONS

    parser = command_parser(
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
    add_output_format(parser, "--to")
    add_tomograms_option(parser)
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
    parser.set_defaults(func=run)


def run(args) -> None:
    from .. import tables

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
