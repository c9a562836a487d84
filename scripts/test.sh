#!/usr/bin/env bash
# The test suite: installs what it needs, starts the local stack (real Redis, PostgreSQL,
# kinesalite, moto), then runs unit, job-graph, integration and end-to-end tests.
#   bash scripts/test.sh           the full suite (what CI runs)
#   bash scripts/test.sh --fast    unit + job graph: no servers, no ../shared (the committed slice), a few minutes
# Other arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=0
args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then fast=1; else args+=("$arg"); fi
done
bash scripts/setup.sh
if [ "$fast" = 1 ]; then
  exec .venv/bin/python -m pytest -m "(unit or jobgraph) and not shared_data" ${args[@]+"${args[@]}"}
fi
.venv/bin/python -m rig.stack start
exec .venv/bin/python -m pytest ${args[@]+"${args[@]}"}
