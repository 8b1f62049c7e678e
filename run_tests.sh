#!/usr/bin/env bash
# Run the test suite (unit tests + the smoke report end to end), setting up .venv first if needed.
#   ./run_tests.sh [pytest args...]
set -uo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
exec "$PY" -m pytest -q tests "$@"
