"""Sub-commands of the `cxr-cascade` command line (see `cxr_cascade.cli`).

Each module here exposes `register(subparsers)`, which adds its parser and sets `func(args) -> int`
as the parser default. Every module is imported to register its parser, on `cxr-cascade --help`
too, so a module's top level imports only light modules (no TensorFlow, Keras, OpenCV,
matplotlib or JAX); the heavy ones are imported inside the function that runs the command.
"""

from __future__ import annotations

import argparse
import importlib


class CLIError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


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
