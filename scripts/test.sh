#!/usr/bin/env bash
# Install Waypoint with its test tools into ./.venv, lint, and run the test suite.
# Tests use $TEST_DATABASE_URL when set, otherwise an embedded PostgreSQL of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
install_project '.[test]'
.venv/bin/ruff check app tests scripts migrations
.venv/bin/ruff format --check app tests scripts migrations
# WAYPOINT_TEST_PROCESSES=2 runs modules in two processes, each module whole on one: faster,
# since most tests wait on the servers they start, but the tests bound in time (a hung worker
# replaced, a stall bound) then share the CPUs with another module and can fail. CI runs one.
exec .venv/bin/python -m pytest -n "${WAYPOINT_TEST_PROCESSES:-0}" --dist loadfile "$@"
