#!/usr/bin/env bash
# The main job, from nothing: set up .venv, then run a local swarm (a bootstrap node and peers as
# separate processes on loopback) and print its live membership until Ctrl+C.
# Extra arguments go to `swarmnet local` (e.g. `scripts/demo.sh --peers 5 --churn 15`).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
exec "${SWARMNET_VENV:-.venv}/bin/swarmnet" local "$@"
