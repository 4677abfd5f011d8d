#!/bin/sh
# Regenerates deploy/constraints.txt (the versions the images install) from the project's venv: `make constraints`.
# torch is left out: each image installs torch==2.13.0 from its own index (CPU or CUDA build) first.
set -eu
VENV=${VENV:-.venv}
{
    echo "# Versions the Docker images install (pip install -c deploy/constraints.txt), frozen from a venv where"
    echo "# \`make install\` passed the tests. Regenerate: make constraints (deploy/constraints.sh). Not edited by hand."
    "$VENV/bin/pip" freeze --exclude-editable --disable-pip-version-check | grep -v -E '^(torch|smoothguard)=='
} > deploy/constraints.txt
