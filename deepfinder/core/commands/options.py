"""Options that several ``deepfinder`` commands share, and settings built from given options.

A setting's option takes its help and default from the stage's settings
(:mod:`deepfinder.core.settings`); ``--settings FILE`` gives them all at once (an option given
replaces the file's value).
"""

from __future__ import annotations

import argparse
import dataclasses

from ..settings import default_of, help_of, read_settings


def command_parser(subparsers, name: str, help: str) -> argparse.ArgumentParser:
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
        type=gpu_id,
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


def add_setting(parser, settings_class: type, name: str, *flags: str, **options) -> None:
    """An option for the setting ``name`` of ``settings_class``, with the setting's help.

    The option's value is None unless given, so that :func:`settings_from` can tell
    given values from defaults (which a preset may change).
    """
    default = default_of(settings_class, name)
    # Switches and per-class settings (empty by default) say in their help what no value means.
    shown = "" if isinstance(default, bool | tuple) else f" (default: {default})"
    turns_off = "Turn off: " if options.get("action") == "store_false" else ""
    parser.add_argument(
        *flags, dest=name, default=None, help=turns_off + help_of(settings_class, name) + shown, **options
    )
    parser.setting_options[name] = "/".join(flags)


def add_settings_file(parser, settings_class: type) -> None:
    """The ``--settings`` option: a JSON file of ``settings_class`` (:func:`write_settings`)."""
    parser.add_argument(
        "--settings",
        default=None,
        metavar="JSON",
        help=f"the {settings_class.__name__} of this run, as written by the Scipion protocol: an option "
        "given on the command line replaces the file's value",
    )


def gpu_id(text: str) -> str:
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


def add_coordinates_option(parser) -> None:
    parser.add_argument(
        "--coordinates-voxel-size",
        type=float,
        default=None,
        metavar="ANGSTROM",
        help="Angstrom per pixel of the positions in particle tables that do not state it: CSV and XML "
        "(default: the tomogram's voxels) and STAR files without a pixel size (no default); they are "
        "rescaled to the tomogram's voxels. RELION 5 tables are placed with the tomogram's size",
    )


def add_mask_options(parser, what: str) -> None:
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


def add_output_format(parser, flag: str) -> None:
    from ..tables import FORMATS

    parser.add_argument(
        flag,
        default=None,
        choices=list(FORMATS),
        help="format of the output table (default: by its extension; .star is RELION 5)",
    )


def add_tomograms_option(parser) -> None:
    parser.add_argument(
        "--tomograms",
        default=None,
        metavar="STAR | X,Y,Z",
        help="size of the tomograms, for RELION 5 tables (positions from the tomogram centre): a RELION 5 "
        "tomograms.star, or one size X,Y,Z in voxels of --voxel-size for every tomogram",
    )
