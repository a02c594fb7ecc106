"""The ``deepfinder`` command line: argument parsing only, each subcommand calls the engine."""
from __future__ import annotations

import argparse


def _add_simulate(subparsers) -> None:
    parser = subparsers.add_parser(
        "simulate", help="simulate tomograms with known particles (tomogram, particle table, label and "
                         "occupancy maps)")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "demo", "bench"],
                        help="tiny: fast tests; demo: the README's example; bench: SHREC'19-like "
                             "(needs ../shared/data)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--tomograms", type=int, default=None, help="number of tomograms (preset default)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same data")
    parser.add_argument("--snr", type=float, default=None,
                        help="signal-to-noise ratio of the projections (preset default)")
    parser.add_argument("--templates", nargs="+", default=None, metavar="MRC",
                        help="density maps to use as classes instead of the built-in shapes")
    parser.add_argument("--template-voxel-size", type=float, default=None,
                        help="voxel size (Angstrom) of the templates if their headers lack it")
    parser.set_defaults(func=_run_simulate)


def _run_simulate(args) -> None:
    from .simulate import simulate_dataset

    result = simulate_dataset(args.out, preset=args.preset, n_tomograms=args.tomograms, seed=args.seed,
                              progress=True, snr=args.snr, templates=args.templates,
                              template_voxel_size=args.template_voxel_size)
    print(f"Wrote {len(result['tomograms'])} tomograms to {args.out} "
          f"({result['voxel_size']:g} A/voxel); classes in {result['classes']}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="deepfinder", description=__doc__)
    subparsers = parser.add_subparsers(dest="command", required=True)
    _add_simulate(subparsers)
    args = parser.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
