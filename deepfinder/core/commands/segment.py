"""``deepfinder segment``: every voxel of a tomogram labelled by a trained model."""

from __future__ import annotations

import argparse

from ..settings import PRECISIONS, SegmentationSettings
from .options import add_mask_options, add_setting, add_settings_file, command_parser, settings_from


def segmentation_settings(args: argparse.Namespace) -> SegmentationSettings:
    """The segmentation settings of a ``segment`` command line."""
    return settings_from(args, SegmentationSettings())


def add_parser(subparsers) -> None:
    parser = command_parser(
        subparsers,
        "segment",
        help="label every voxel of a tomogram with a trained model (label map, score maps)",
    )
    parser.add_argument("--tomogram", required=True, help="tomogram (MRC)")
    parser.add_argument("--model", required=True, help="trained weights (*.weights.h5)")
    parser.add_argument(
        "--coarse-model",
        default=None,
        help="a second model, trained on the same classes on the tomograms binned by 2: its scores on "
        "this tomogram binned by 2 are averaged with --model's (small and large particles both named better)",
    )
    parser.add_argument("--labels", required=True, help="output label map (MRC, 1 byte per voxel)")
    parser.add_argument(
        "--scores", default=None, help="also write float16 score maps, one per class: <stem>_class<k>.mrc"
    )
    add_settings_file(parser, SegmentationSettings)
    add_setting(parser, SegmentationSettings, "patch_size", "--patch-size", type=int)
    add_setting(parser, SegmentationSettings, "crop_voxels", "--crop", type=int)
    add_setting(parser, SegmentationSettings, "batch_size", "--batch-size", type=int)
    add_setting(parser, SegmentationSettings, "bin_scores", "--bin", action="store_true")
    add_setting(parser, SegmentationSettings, "average_rotations", "--average-rotations", action="store_true")
    add_setting(parser, SegmentationSettings, "match_spectrum", "--match-spectrum", action="store_true")
    parser.add_argument(
        "--n-classes",
        type=int,
        default=None,
        help="expected class count, background included (required for bare weights)",
    )
    add_setting(parser, SegmentationSettings, "precision", "--precision", choices=PRECISIONS)
    add_mask_options(parser, "segment only inside it: background elsewhere, and tiles outside it are skipped")
    parser.set_defaults(func=run)


def run(args) -> None:
    from .. import io
    from ..roi import read_mask_for
    from ..segment import MAX_LABEL_CLASSES, score_map_paths, segment_tomogram

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
        args.tomogram,
        args.model,
        args.labels,
        args.scores,
        settings,
        n_classes=args.n_classes,
        mask=mask,
        coarse_weights_path=args.coarse_model,
    )
    skipped = f", {result['n_tiles_skipped']} outside the mask skipped" if args.mask else ""
    print(
        f"Wrote {result['labels']}"
        + "".join(f", {p}" for p in result["scores"].values())
        + f" in {result['seconds']:.0f} s ({result['voxels_per_second'] / 1e6:.2f} Mvoxel/s, "
        f"{result['n_tiles']} tiles of {result['tile_shape']}{skipped})"
    )
