#!/usr/bin/env bash
# Create the project venv (.venv, or $SWARMNET_VENV) if missing and install swarmnet into it
# with the extras given as arguments (e.g. `dev`). Works on a machine with only python3 and pip.
# torch goes in first as the CPU build (torch==2.13.0) so pip never pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SWARMNET_VENV:-.venv}"
extras="$(IFS=,; echo "$*")"
pip_opts=(--disable-pip-version-check --progress-bar off -q)

[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
if ! "$venv/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "setup: installing torch==2.13.0 (CPU build) into $venv"
    "$venv/bin/python" -m pip install "${pip_opts[@]}" torch==2.13.0 2>&1 | grep -v "is ignored: it is neither" || true
fi
echo "setup: installing swarmnet${extras:+[$extras]} (editable) into $venv"
# Pin the torch already there, so no extra (peft, transformers, sentence-transformers) can pull another build.
torch_version="$("$venv/bin/python" -c "import torch; print(torch.__version__.split('+')[0])")"
"$venv/bin/python" -m pip install "${pip_opts[@]}" -e ".${extras:+[$extras]}" "torch==$torch_version" 2>&1 \
    | grep -v "is ignored: it is neither" || true
"$venv/bin/python" -c "import swarmnet, torch, hivemind" || { echo "setup: install failed" >&2; exit 1; }
