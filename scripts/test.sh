#!/usr/bin/env bash
# Everything the tests need, then the tests: setup, services, lint, types, import
# contracts (.importlinter), pytest.
# Extra arguments go to pytest (e.g. scripts/test.sh tests/unit -x).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
scripts/services.sh
scripts/browser.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
