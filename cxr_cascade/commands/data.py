"""`cxr-cascade data {index,split,check,phantoms}`: data sets before any training."""

from __future__ import annotations

from cxr_cascade.commands import register_command

# (sub-command, module in cxr_cascade.commands, one-line help)
DATA_COMMANDS: tuple[tuple[str, str], ...] = (
    ("index", "data_index"),
    ("split", "data_split"),
    ("check", "data_check"),
    ("phantoms", "data_phantoms"),
)


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="index, split, check and synthesise chest X-ray data sets"
    )
    data_sub = parser.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    for name, module_name in DATA_COMMANDS:
        register_command(data_sub, name, module_name)
