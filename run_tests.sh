#!/usr/bin/env bash
# Run the test suite (unit tests + the smoke report end to end), setting up .venv first if needed.
#   ./run_tests.sh [pytest args...]
set -uo pipefail
cd "$(dirname "$0")"
source scripts/bootstrap.sh
# junit.xml + context.json: what `python scripts/readme.py record outputs/tests` files for the README
mkdir -p outputs/tests
"$PY" scripts/readme.py context ./run_tests.sh "$@" > outputs/tests/context.json || true
exec "$PY" -m pytest -q tests --junitxml=outputs/tests/junit.xml "$@"
