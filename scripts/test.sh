#!/usr/bin/env bash
# The whole test suite from nothing: set up .venv, then lint, format check, type check, pytest.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m "not slow" -x`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh dev triton experiments federated
venv="${SWARMNET_VENV:-.venv}"
echo "== ruff check"; "$venv/bin/ruff" check .
echo "== ruff format --check"; "$venv/bin/ruff" format --check .
echo "== mypy"; "$venv/bin/python" scripts/typecheck.py
echo "== pytest"; "$venv/bin/python" -m pytest "$@"
