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
# The monitor's browser test drives the system Chromium; without it that test skips with a reason.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1; then
    echo "== apt-get install chromium (for tests/e2e/test_monitor_browser.py)"
    sudo_cmd=""; [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo -n"
    { $sudo_cmd apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq chromium; } \
        || echo "   could not install Chromium; the browser test will be skipped"
fi
# The Node federated client test drives @grpc/grpc-js; without node/npm or the packages it skips with a reason.
if command -v npm >/dev/null 2>&1 && [ ! -d "$venv/node/node_modules/@grpc/grpc-js" ]; then
    echo "== npm install @grpc/grpc-js @grpc/proto-loader into $venv/node (tests/integration/federated/test_foreign_client.py)"
    timeout 600 npm install --prefix "$venv/node" --no-audit --no-fund --silent @grpc/grpc-js@1.14.7 @grpc/proto-loader@0.8.1 \
        >/dev/null 2>&1 || echo "   npm install failed; the Node client test will be skipped"
fi
echo "== pytest"; "$venv/bin/python" -m pytest "$@"
