#!/usr/bin/env bash
# Install Waypoint with its test tools into ./.venv, lint, and run the test suite.
# Tests use $TEST_DATABASE_URL when set, otherwise an embedded PostgreSQL of their own.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
install_project '.[test]'
.venv/bin/ruff check app tests scripts migrations
.venv/bin/ruff format --check app tests scripts migrations
# Modules run in parallel, each whole on one process (most tests wait on servers they start);
# WAYPOINT_TEST_PROCESSES=0 runs them all in this one.
exec .venv/bin/python -m pytest -n "${WAYPOINT_TEST_PROCESSES:-2}" --dist loadfile "$@"
