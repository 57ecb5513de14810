"""requirements.lock from the running environment, and its differences from it.

    python scripts/lockfile.py write requirements.lock   # pin every installed distribution
    python scripts/lockfile.py diff requirements.lock    # exit 1 listing what differs

Local version labels are dropped (``torch 2.13.0+cpu`` is pinned as ``torch==2.13.0``) so the
pin matches the CPU build this machine serves; tracehouse itself and the installers are left out.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

UNPINNED = {"tracehouse", "pip", "setuptools", "wheel"}
HEADER = (
    "# Every package scripts/setup.sh installs, pinned: written by scripts/lock.sh from the\n"
    "# newest versions pyproject.toml allows that passed the suite (scripts/test-latest.sh).\n"
)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, str]:
    found = {}
    for dist in metadata.distributions():
        name = canonical(dist.metadata["Name"])
        if name not in UNPINNED:
            found[name] = dist.version.split("+", 1)[0]
    return found


def read_lock(path: Path) -> dict[str, str]:
    pins = {}
    for text in path.read_text().splitlines():
        line = text.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonical(name)] = version.strip()
    return pins


def differences(lock: dict[str, str], have: dict[str, str]) -> list[str]:
    lines = []
    for name in sorted(lock.keys() | have.keys()):
        locked, now = lock.get(name, "(not locked)"), have.get(name, "(not installed)")
        if locked != now:
            lines.append(f"{name}: {locked} -> {now}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("write", "diff"):
        print(__doc__, file=sys.stderr)
        return 2
    command, path = argv[0], Path(argv[1])
    if command == "write":
        pins = "".join(f"{name}=={version}\n" for name, version in sorted(installed().items()))
        path.write_text(HEADER + pins)
        return 0
    lines = differences(read_lock(path), installed())
    print("\n".join(lines) if lines else "none")
    return 1 if lines else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
