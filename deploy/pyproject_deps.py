"""Print pyproject.toml's dependencies and those of the extras named as arguments, one per line.

The Dockerfiles install these (with deploy/constraints.txt) before they copy the source, so that a code
change rebuilds only the layers after it:  python deploy/pyproject_deps.py ml > requirements.txt
"""

import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    return [*project["dependencies"], *(r for extra in extras for r in project["optional-dependencies"][extra])]


if __name__ == "__main__":
    print("\n".join(requirements(Path("pyproject.toml"), sys.argv[1:])))
