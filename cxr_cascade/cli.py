"""The `cxr-cascade` command line: one sub-command module per job.

Each module in `cxr_cascade.commands` exposes `register(subparsers)`, which adds its parser and
sets `func(args) -> int` as the parser default. Modules are imported lazily by name so that
`cxr-cascade --help` stays fast and a broken optional dependency only breaks its own command.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from cxr_cascade import __version__

# (sub-command, module in cxr_cascade.commands)
COMMANDS: tuple[tuple[str, str], ...] = (
    ("data", "data"),
    ("train", "train"),
    ("export", "export"),
    ("predict", "predict"),
    ("evaluate", "evaluate"),
    ("gradcam", "gradcam"),
    ("audit", "audit"),
)


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cxr-cascade",
        description=(
            "Cascade-SEMEnet chest X-ray classification (Lv et al. 2020). "
            "Research software, not a medical device."
        ),
    )
    parser.add_argument("--version", action="version", version=f"cxr-cascade {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module_name in COMMANDS:
        register_command(subparsers, name, module_name)
    return parser


def register_command(subparsers, name: str, module_name: str) -> None:
    """Adds `cxr_cascade.commands.<module_name>`; if a dependency it needs is missing (OpenCV or
    TensorFlow on an accelerator image), `name` is still listed and says so when run."""
    try:
        importlib.import_module(f"cxr_cascade.commands.{module_name}").register(subparsers)
    except ImportError as error:
        missing, reason = error.name or str(error), str(error)
        parser = subparsers.add_parser(name, help=f"(unavailable here: needs {missing})")
        parser.add_argument("rest", nargs=argparse.REMAINDER)

        def unavailable(args: argparse.Namespace) -> int:
            raise CLIError(f"needs {missing}, which is not installed ({reason})")

        parser.set_defaults(func=unavailable)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except CLIError as error:
        print(f"cxr-cascade {args.command}: error: {error}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as error:
        print(f"cxr-cascade {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cxr-cascade {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
