"""Print the requirements of a pyproject.toml (dependencies + extras), one a line.

Used by the Dockerfile to install the third-party dependencies in their own layer, before
the project's source is copied, so that editing the code does not re-download NumPy, SciPy,
Prefect and friends on every image build. Self-references such as ``all =
["mlrdist[distributed,s3,flows,server]"]`` are expanded; the project itself is never printed.
``[dependency-groups]`` (test, lint, docs, ...) are development tools and are not read.

    python pyproject_requirements.py pyproject.toml all > requirements.txt
"""

from __future__ import annotations

import re
import sys
import tomllib

_SELF = re.compile(r"^\s*(?P<name>[A-Za-z0-9._-]+)\s*\[(?P<extras>[^\]]*)\]\s*$")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(pyproject: dict, extras: list[str]) -> list[str]:
    """Dependencies of the project plus those of ``extras`` (recursively), in order."""
    project = pyproject["project"]
    name = _norm(project["name"])
    optional = project.get("optional-dependencies", {})
    out: list[str] = list(project.get("dependencies", []))
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop(0).strip()
        if not extra or extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"unknown extra {extra!r}; known: {', '.join(sorted(optional))}")
        seen.add(extra)
        for req in optional[extra]:
            match = _SELF.match(req)
            if match and _norm(match["name"]) == name:
                todo.extend(match["extras"].split(","))
            elif req not in out:
                out.append(req)
    return out


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[1], "rb") as f:
        pyproject = tomllib.load(f)
    print("\n".join(requirements(pyproject, argv[2:])))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
