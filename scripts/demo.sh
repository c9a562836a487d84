#!/usr/bin/env bash
# Runs the whole pipeline locally on replayed real Binance data and prints live predictions.
# Extra arguments go to rig/pipeline.py (e.g. --speed 10, --mini-cluster, --duration 120).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m rig.pipeline "$@"
