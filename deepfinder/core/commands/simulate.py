"""``deepfinder simulate``: tomograms with known particles."""

from __future__ import annotations

from .options import command_parser


def add_parser(subparsers) -> None:
    from ..simulate import PRESETS, SHREC19_DIR_VARIABLE

    parser = command_parser(
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
    parser.set_defaults(func=run)


def run(args) -> None:
    from ..simulate import simulate_dataset

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
