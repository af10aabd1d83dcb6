#!/usr/bin/env bash
# The whole test suite from nothing: set up .venv, then lint, format check, type check, pytest.
# Extra arguments go to pytest (e.g. `scripts/test.sh -m "not slow" -x`).
#
# Two optional steps install what two tests drive from outside Python; each prints one line saying
# what it does and one with the result, keeps its full log in the venv, and can be skipped (the
# test it serves then skips with a reason):
#   SWARMNET_NO_APT=1  skip `apt-get install chromium` (as root, or through passwordless sudo) for
#                      tests/e2e/test_monitor_browser.py; log in $venv/apt-chromium.log
#   SWARMNET_NO_NPM=1  skip `npm install @grpc/grpc-js @grpc/proto-loader` into $venv/node for
#                      tests/integration/federated/test_foreign_client.py; log in $venv/npm-grpc.log
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh dev triton experiments federated
venv="${SWARMNET_VENV:-.venv}"

# The monitor's browser test drives the system Chromium at /usr/bin/chromium (never a downloaded one).
install_chromium() {
    local test="tests/e2e/test_monitor_browser.py" log="$venv/apt-chromium.log" sudo_cmd=""
    [ -x /usr/bin/chromium ] && return 0
    if [ "${SWARMNET_NO_APT:-}" = 1 ]; then
        echo "== chromium: not installed (SWARMNET_NO_APT=1); $test will skip"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "== chromium: no /usr/bin/chromium and no apt-get; $test will skip"
        return 0
    fi
    if [ "$(id -u)" -ne 0 ]; then
        if ! sudo -n true >/dev/null 2>&1; then
            echo "== chromium: not installed (apt-get needs root or passwordless sudo); $test will skip"
            return 0
        fi
        sudo_cmd="sudo -n"
    fi
    echo "== chromium: apt-get install chromium${sudo_cmd:+ (through sudo)} for $test (SWARMNET_NO_APT=1 skips this)"
    # sudo drops the caller's environment, so DEBIAN_FRONTEND goes through `env` after it.
    if { $sudo_cmd apt-get update -q && $sudo_cmd env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q chromium; } >"$log" 2>&1 && [ -x /usr/bin/chromium ]; then
        echo "   installed /usr/bin/chromium"
    else
        echo "   could not install Chromium (full log: $log); $test will skip"
    fi
}

# The Node federated client test drives @grpc/grpc-js; without node/npm or the packages it skips.
install_node_packages() {
    local test="tests/integration/federated/test_foreign_client.py" log="$venv/npm-grpc.log"
    local packages=(@grpc/grpc-js@1.14.7 @grpc/proto-loader@0.8.1)
    [ -d "$venv/node/node_modules/@grpc/grpc-js" ] && return 0
    if [ "${SWARMNET_NO_NPM:-}" = 1 ]; then
        echo "== npm: packages not installed (SWARMNET_NO_NPM=1); the Node client in $test will skip"
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1; then
        echo "== npm: not found; the Node client in $test will skip"
        return 0
    fi
    echo "== npm: install ${packages[*]} into $venv/node for $test (SWARMNET_NO_NPM=1 skips this)"
    if timeout 600 npm install --prefix "$venv/node" --no-audit --no-fund "${packages[@]}" >"$log" 2>&1; then
        echo "   installed"
    else
        echo "   npm install failed (full log: $log); the Node client in $test will skip"
    fi
}

install_chromium
install_node_packages
echo "== ruff check"; "$venv/bin/ruff" check .
echo "== ruff format --check"; "$venv/bin/ruff" format --check .
echo "== mypy"; "$venv/bin/python" -m mypy
echo "== pytest"; "$venv/bin/python" -m pytest "$@"
