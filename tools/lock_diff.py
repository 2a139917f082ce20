"""Print the packages whose installed version differs from the lock file.

Usage: python tools/lock_diff.py LOCK FREEZE, where FREEZE is `pip freeze` output. Prints one
line per difference (``name: locked -> installed``), or that there is none; always exits 0, since
a difference is information for `make test-latest`, not a failure.
"""

from __future__ import annotations

import re
import sys

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def _pins(path: str) -> dict[str, str]:
    pins = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            m = _PIN.match(line.strip())
            if m:
                pins[re.sub(r"[-_.]+", "-", m.group(1)).lower()] = m.group(2)
    return pins


def main(lock: str, freeze: str) -> int:
    locked, installed = _pins(lock), _pins(freeze)
    lines = [f"  {name}: {locked.get(name, '(not locked)')} -> {installed.get(name, '(not installed)')}"
             for name in sorted(set(locked) | set(installed))
             if locked.get(name) != installed.get(name)]
    print("\n".join(lines) if lines else "  none")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
