#!/usr/bin/env bash
# Create the project venv (.venv, or $SWARMNET_VENV) if missing and install swarmnet into it
# with the extras given as arguments (e.g. `dev`). Works on a machine with only python3 and pip.
# torch goes in first as the CPU build (torch==2.13.0), with numpy (torch imported without numpy warns
# "Failed to initialize NumPy"); a torch already in the venv (say a CUDA build of yours) is kept.
# PyPI's Linux torch wheels are CUDA builds with several GB of nvidia-* packages, so torch comes from
# PyTorch's CPU index when it answers: $SWARMNET_TORCH_INDEX, or the default below (empty: pip's own only).
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${SWARMNET_VENV:-.venv}"
extras="$(IFS=,; echo "$*")"
pip_opts=(--disable-pip-version-check --progress-bar off -q)

[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
# Read installed versions from the package metadata: importing torch before numpy is in would warn.
installed() { "$venv/bin/python" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1" 2>/dev/null; }
if ! installed torch >/dev/null; then
    torch_index="${SWARMNET_TORCH_INDEX-https://download.pytorch.org/whl/cpu}"
    if [ -n "$torch_index" ] && ! "$venv/bin/python" -c \
        "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=10)" "$torch_index" \
        >/dev/null 2>&1; then
        torch_index=""  # unreachable: pip's own indexes (and find-links) alone
    fi
    echo "setup: installing torch==2.13.0 (CPU build) and numpy into $venv${torch_index:+ (torch from $torch_index)}"
    "$venv/bin/python" -m pip install "${pip_opts[@]}" ${torch_index:+--extra-index-url "$torch_index"} \
        torch==2.13.0 "numpy>=1.26" 2>&1 | grep -v "is ignored: it is neither" || true
fi
echo "setup: installing swarmnet${extras:+[$extras]} (editable) into $venv"
# Pin the torch already there, so no extra (peft, transformers, sentence-transformers) can pull another build.
torch_version="$(installed torch)"
torch_version="${torch_version%%+*}"
"$venv/bin/python" -m pip install "${pip_opts[@]}" -e ".${extras:+[$extras]}" "torch==$torch_version" 2>&1 \
    | grep -v "is ignored: it is neither" || true
"$venv/bin/python" -c "import swarmnet, torch, hivemind" || { echo "setup: install failed" >&2; exit 1; }
