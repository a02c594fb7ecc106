"""``deepfinder evaluate``: precision, recall and F1 of detections against a reference, per class."""

from __future__ import annotations

from ..errors import InputError
from ..settings import per_class
from .options import add_tomograms_option, command_parser


def add_parser(subparsers) -> None:
    parser = command_parser(
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
    add_tomograms_option(parser)
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
    parser.set_defaults(func=run)


def run(args) -> None:
    import numpy as np

    from .. import io, tables
    from ..evaluate import format_table
    from ..settings import EvaluationSettings
    from ..steps.evaluate import evaluate_files, write_evaluation

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
