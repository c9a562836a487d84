#!/usr/bin/env bash
# The test suite: installs what it needs, starts the local stack (real Redis, PostgreSQL,
# kinesalite, moto), then runs unit, integration and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python deploy/local/stack.py start
exec .venv/bin/python -m pytest "$@"
