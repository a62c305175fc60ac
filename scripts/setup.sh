#!/usr/bin/env bash
# Create .venv and install trainserve with its test tools. Safe to run again: it only
# reinstalls when pyproject.toml changed.
# torch is requested first and on its own (TORCH_SPEC), so the project's wide torch range
# is already satisfied when the rest installs.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

"$PYTHON" - <<'PY' || { echo "trainserve needs Python 3.11 or newer" >&2; exit 1; }
import sys
sys.exit(sys.version_info < (3, 11))
PY

if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
    .venv/bin/python -m pip install -q --upgrade pip
fi
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
    echo "installing $TORCH_SPEC"
    .venv/bin/python -m pip install -q "$TORCH_SPEC"
fi
stamp=.venv/.trainserve-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ clients/python/pyproject.toml -nt "$stamp" ]; then
    echo "installing trainserve and its dependencies"
    # The client first: the server's CLI depends on it, and it is not on PyPI.
    .venv/bin/python -m pip install -q -e clients/python
    .venv/bin/python -m pip install -q -e '.[dev]'
    touch "$stamp"
fi
