"""Write ``constraints.txt``: the exact versions of everything the project and all its extras pulled into the
current environment (the dependency closure, read from installed metadata: reinstall the project first,
``pip install -e ".[test]" --no-deps``, so its metadata is current), so CI and users can install the tested
set: ``pip install -c constraints.txt -e ".[test]"``.

    python scripts/write_constraints.py
"""
from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
PROJECT = "lang-seg-ms"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def closure() -> dict:
    """``{name: version}`` of the installed dependency closure of the project and its extras."""
    extras = metadata.distribution(PROJECT).metadata.get_all("Provides-Extra") or []
    found, pending = {}, [(PROJECT, frozenset(extras))]
    while pending:
        name, extras = pending.pop()
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency not installed here (another platform's marker)
        key = canonical(dist.metadata["Name"])
        if key in found and not extras:
            continue
        found[key] = dist.version
        for text in dist.requires or ():
            req = Requirement(text)
            env = [{"extra": e} for e in extras] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(e) for e in env):
                if canonical(req.name) not in found:
                    pending.append((req.name, frozenset(req.extras)))
    found.pop(canonical(PROJECT), None)
    return found


def main() -> int:
    pins = closure()
    lines = [f"# The tested set (python {sys.version_info.major}.{sys.version_info.minor}, x86_64): "
             "scripts/write_constraints.py writes it from an environment where the suite passed.",
             *(f"{name}=={version}" for name, version in sorted(pins.items()))]
    (ROOT / "constraints.txt").write_text("\n".join(lines) + "\n")
    print(f"constraints.txt: {len(pins)} packages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
