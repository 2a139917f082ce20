"""What every bench records beside its numbers, and how its JSON is written (`--json-out FILE`).

`benchmarks/report.py` renders these files into the README's performance tables, so each one
says which bench made it, with which command, on which machine.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any


def provenance(bench: str) -> dict[str, Any]:
    """`{"utc", "bench", "command", "machine"}`: when, the bench's name, its command line and the CPU."""
    return {
        "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "bench": bench,
        "command": " ".join(["python", *sys.argv]),
        "machine": f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}",
    }


def write_json(path: str | os.PathLike, result: dict[str, Any]) -> None:
    """Writes `result` as indented JSON at `path` (its folder made if needed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
