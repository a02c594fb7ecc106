"""The ``deepfinder`` command line: one module per command in :mod:`deepfinder.core.commands` (its
options, and a ``run`` that builds the command's settings and calls its step); here the parser and
what every command shares: verbosity, GPUs, threads, the exit status and the ``--error-file``.

The engine's progress is printed as it logs it (``--quiet``: warnings only, ``--verbose``: details).
"""

from __future__ import annotations

import argparse
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

from .commands import cluster, convert, evaluate, segment, simulate, targets, train
from .errors import InputError, about_file
from .settings import SettingError

_log = logging.getLogger("deepfinder.cli")

COMMANDS = (simulate, targets, train, segment, cluster, evaluate, convert)


def build_parser() -> argparse.ArgumentParser:
    """The ``deepfinder`` parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="deepfinder",
        description="Find macromolecules in cryo-electron tomograms: a 3D U-net labels every voxel, "
        "clustering turns the labels into particles. 'deepfinder COMMAND --help' gives a command's options.",
    )
    # The installed distribution's version: the engine imports nothing outside deepfinder.core.
    parser.add_argument("--version", action="version", version=f"%(prog)s {version('scipion-em-deepfinder')}")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(subparsers)
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
