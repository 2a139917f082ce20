"""The `cxr-cascade` command line: one sub-command module per job.

Each module in `cxr_cascade.commands` exposes `register(subparsers)`, which adds its parser and
sets `func(args) -> int` as the parser default. Modules are imported by name, and each keeps its
heavy imports inside the function that runs the command, so that `cxr-cascade --help` stays fast
and a broken optional dependency only breaks its own command.
"""

from __future__ import annotations

import argparse
import contextlib
import faulthandler
import logging
import os
import signal
import sys
import threading
import warnings

from cxr_cascade import __version__
from cxr_cascade.commands import CLIError, register_command

# (sub-command, module in cxr_cascade.commands)
COMMANDS: tuple[tuple[str, str], ...] = (
    ("data", "data"),
    ("train", "train"),
    ("export", "export"),
    ("predict", "predict"),
    ("evaluate", "evaluate"),
    ("gradcam", "gradcam"),
    ("audit", "audit"),
    ("release", "release"),
    ("segment", "segment"),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-cascade",
        description=(
            "Cascade-SEMEnet chest X-ray classification (Lv et al. 2020). "
            "Research software, not a medical device."
        ),
    )
    parser.add_argument("--version", action="version", version=f"cxr-cascade {__version__}")
    parser.add_argument(
        "--verbose", action="store_true",
        help="show TensorFlow's and OpenCV's own log lines, hidden by default (also accepted "
             "after the command, or CXR_CASCADE_VERBOSE=1)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS:
        register_command(subparsers, name, module_name)
    return parser


def _interrupt(signum, frame) -> None:
    """SIGINT: the first raises KeyboardInterrupt (caught in `main`: one line, exit 130); a
    second one while that unwinds leaves at once, silently."""
    signal.signal(signal.SIGINT, lambda *_: os._exit(130))
    raise KeyboardInterrupt


def quiet_logs(verbose: bool) -> None:
    """Silences TensorFlow's C++ (absl) logs and OpenCV's warnings unless `verbose`.

    Must run before TensorFlow or OpenCV is imported: both read their log level from the
    environment once, at import. Quiet means TF_CPP_MIN_LOG_LEVEL=3 (no oneDNN notice, no
    `cuInit` failure on machines without a GPU) and OPENCV_LOG_LEVEL=ERROR (no "PNG input buffer
    is incomplete"); every problem with the user's input is reported by cxr-cascade itself, one
    line per file. `--verbose` (or CXR_CASCADE_VERBOSE=1) shows them all.
    """
    if verbose:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "0"
        os.environ["OPENCV_LOG_LEVEL"] = "INFO"
        return
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)


def _silence_native_stderr():
    """Points file descriptor 2 at /dev/null while Python's `sys.stderr` keeps the terminal.

    TensorFlow 2.21 writes its start-up lines (oneDNN notice, missing CUDA drivers, `cuInit`
    failure) with absl before absl's log is initialised, which ignores TF_CPP_MIN_LOG_LEVEL; libpng
    and OpenCV write to the same descriptor. Python's own output (our one-line errors, warnings,
    tracebacks of real bugs, faulthandler's crash report) goes to a duplicate of the original
    descriptor. Applied only when `sys.stderr` is the process's own (not under a test's capture).

    Returns a function that restores descriptor 2 and `sys.stderr`, or None when not applied.
    """
    try:
        if sys.stderr is not sys.__stderr__ or sys.stderr is None:
            return None
        sys.stderr.flush()
        saved = os.dup(2)
        devnull = os.open(os.devnull, os.O_WRONLY)
    except (OSError, ValueError, AttributeError):
        return None
    original = sys.stderr
    sys.stderr = sys.__stderr__ = os.fdopen(
        os.dup(saved), "w", buffering=1, encoding=original.encoding, errors=original.errors
    )
    os.dup2(devnull, 2)
    os.close(devnull)
    if faulthandler.is_enabled():
        faulthandler.enable(file=sys.stderr)

    def restore() -> None:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        replaced = sys.stderr
        sys.stderr = sys.__stderr__ = original
        with contextlib.suppress(Exception):
            replaced.close()

    return restore


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Python warnings as `warning: message` lines (no source file, line or code excerpt)."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _error_line(error: BaseException) -> str | None:
    """`PATH: reason` for an OSError, the first line of a TensorFlow op error; None otherwise."""
    if isinstance(error, OSError):
        reason = error.strerror or str(error)
        if error.filename is not None:
            where = str(error.filename)
            if error.filename2 is not None:
                where += f" -> {error.filename2}"
            return f"{where}: {reason}"
        return reason
    module = type(error).__module__ or ""
    if module.startswith("tensorflow") and hasattr(error, "message"):
        lines = str(error.message).strip().splitlines()
        return lines[0] if lines else type(error).__name__
    return None


def main(argv: list[str] | None = None) -> int:
    # First: Ctrl-C during the (seconds-long) TensorFlow import must not print a traceback.
    previous = restore = shown = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGINT, _interrupt)
    argv = sys.argv[1:] if argv is None else list(argv)
    command = "cxr-cascade"
    try:
        verbose = "--verbose" in argv or os.environ.get("CXR_CASCADE_VERBOSE", "") not in ("", "0")
        quiet_logs(verbose)
        if not verbose:
            restore = _silence_native_stderr()
            shown, warnings.showwarning = warnings.showwarning, _show_warning
        # accepted anywhere on the line (`cxr-cascade predict ... --verbose`)
        argv = [arg for arg in argv if arg != "--verbose"]
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        command = f"cxr-cascade {args.command}"
        try:
            return int(args.func(args) or 0)
        except CLIError as error:
            print(f"{command}: error: {error}", file=sys.stderr)
            return 2
        except ValueError as error:
            print(f"{command}: error: {error}", file=sys.stderr)
            return 2
        except ModuleNotFoundError as error:
            # a command's deliberately lazy import (OpenCV, TensorFlow) on an image without it
            print(f"{command}: error: needs {error.name or error}, which is not installed ({error})",
                  file=sys.stderr)
            return 2
        except Exception as error:  # OSError, TensorFlow op errors: one line, never a traceback
            line = _error_line(error)
            if line is None:
                raise
            print(f"{command}: error: {line}", file=sys.stderr)
            return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    finally:
        if shown is not None:
            warnings.showwarning = shown
        if restore is not None:
            restore()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


if __name__ == "__main__":
    raise SystemExit(main())
