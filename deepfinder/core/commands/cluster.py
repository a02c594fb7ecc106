"""``deepfinder cluster``: particles (one row each) from a label map."""

from __future__ import annotations

from ..settings import ClusterSettings, per_class
from .options import (
    add_mask_options,
    add_output_format,
    add_setting,
    add_settings_file,
    command_parser,
    settings_from,
)


def add_parser(subparsers) -> None:
    parser = command_parser(
        subparsers, "cluster", help="turn a label map into particles (one row per particle)"
    )
    parser.add_argument("--labels", required=True, help="label map (MRC) from segment")
    add_setting(parser, ClusterSettings, "radius", "--radius", nargs="+", metavar="R | CLASS:R")
    add_setting(parser, ClusterSettings, "min_size", "--min-size", nargs="+", metavar="N | CLASS:N")
    add_setting(parser, ClusterSettings, "bandwidth", "--bandwidth", nargs="+", metavar="B | CLASS:B")
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
    add_output_format(parser, "--output-format")
    add_setting(parser, ClusterSettings, "threshold", "--threshold", nargs="+", metavar="T | CLASS:T | auto")
    parser.add_argument(
        "--thresholds-from",
        default=None,
        metavar="JSON",
        help="per-class thresholds written by 'deepfinder evaluate --sweep N --thresholds-output', in "
        "place of --threshold",
    )
    parser.add_argument(
        "--threshold-report",
        default=None,
        metavar="JSON",
        help="with a threshold: write every pick's score before the cut, the thresholds, the fits "
        "and the picks each class lost (the data of the score histogram picture)",
    )
    add_mask_options(parser, "only particles whose centre lies in it are kept")
    add_settings_file(parser, ClusterSettings)
    parser.set_defaults(func=run)


def run(args) -> None:
    import numpy as np

    from .. import io
    from ..segment import MAX_LABEL_CLASSES, score_map_paths
    from ..steps.cluster import cluster_files

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
        settings_from(args, ClusterSettings()),
        scores_path=args.scores,
        score_maps=given_maps,
        tomo_id=args.tomo_id,
        label_scale=2.0 if args.binned else args.label_scale or 1.0,
        mask_path=args.mask,
        mask_voxel_size=args.mask_voxel_size,
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
