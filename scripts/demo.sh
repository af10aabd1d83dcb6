#!/usr/bin/env bash
# The main job, from nothing: set up .venv, then run a local swarm (a bootstrap node and 3 trainer
# peers as separate processes on loopback) that trains a byte-level GPT on the King James Bible with
# DiLoCo and int4 pseudo-gradients, and print a summary at the end.
# Extra arguments go to `swarmnet demo` (e.g. `scripts/demo.sh --peers 4 --steps 1200`).
# It installs swarmnet without extras (the demo needs none); `scripts/setup_env.sh federated` adds the
# federated client's (peft, transformers, MiniLM, scikit-learn) to the same .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup_env.sh
exec "${SWARMNET_VENV:-.venv}/bin/swarmnet" demo "$@"
